//! Kubeconfig files for the admin and for each component, pointing at files in the state dir.

use std::path::Path;

pub fn render(server: &str, pki_dir: &Path, user: &str, cert: &str, key: &str) -> String {
    let pki = pki_dir.display();
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: dfr\n  cluster:\n    server: {server}\n    certificate-authority: {pki}/ca.crt\nusers:\n- name: {user}\n  user:\n    client-certificate: {pki}/{cert}\n    client-key: {pki}/{key}\ncontexts:\n- name: dfr\n  context:\n    cluster: dfr\n    user: {user}\ncurrent-context: dfr\n"
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn renders_a_kubeconfig_kube_rs_can_read() {
        let yaml = render(
            "https://127.0.0.1:6443",
            Path::new("/s/pki"),
            "admin",
            "admin.crt",
            "admin.key",
        );
        let parsed: kube::config::Kubeconfig = serde_yaml::from_str(&yaml).unwrap();
        assert_eq!(parsed.current_context.as_deref(), Some("dfr"));
        let cluster = parsed.clusters[0].cluster.as_ref().unwrap();
        assert_eq!(cluster.server.as_deref(), Some("https://127.0.0.1:6443"));
        assert_eq!(
            cluster.certificate_authority.as_deref(),
            Some("/s/pki/ca.crt")
        );
        let user = parsed.auth_infos[0].auth_info.as_ref().unwrap();
        assert_eq!(user.client_key.as_deref(), Some("/s/pki/admin.key"));
    }
}
