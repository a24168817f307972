//! The operator's Kubernetes client, counting every request it sends: the load an operator puts
//! on the API server is part of its cost, and the benchmark reports it.

use http::Request;
use kube::client::{Body, ClientBuilder};
use kube::{Client, Config};
use prometheus::IntCounterVec;
use tower::util::MapRequestLayer;

pub fn counting_client(config: Config, requests: IntCounterVec) -> Result<Client, kube::Error> {
    let count = MapRequestLayer::new(move |request: Request<Body>| {
        requests.with_label_values(&[verb(&request)]).inc();
        request
    });
    Ok(ClientBuilder::try_from(config)?.with_layer(&count).build())
}

/// The Kubernetes verb of a request (list and watch are GETs on a collection).
fn verb<B>(request: &Request<B>) -> &'static str {
    let query = request.uri().query().unwrap_or_default();
    match request.method().as_str() {
        "GET" if query.split('&').any(|pair| pair == "watch=true") => "watch",
        "GET" => "get_or_list",
        "POST" => "create",
        "PUT" => "update",
        "PATCH" => "patch",
        "DELETE" => "delete",
        _ => "other",
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::verb;
    use http::Request;

    #[test]
    fn watches_are_told_apart_from_reads() {
        let watch = Request::get("/api/v1/pods?labelSelector=a&watch=true")
            .body(())
            .unwrap();
        assert_eq!(verb(&watch), "watch");
        let list = Request::get("/api/v1/pods?labelSelector=a")
            .body(())
            .unwrap();
        assert_eq!(verb(&list), "get_or_list");
        let apply = Request::patch("/api/v1/namespaces/x").body(()).unwrap();
        assert_eq!(verb(&apply), "patch");
    }
}
