// Command coredns is the in-cluster DNS server of the local test cluster. It is upstream CoreDNS
// with only the plugins a kube-dns style Corefile uses compiled in: importing core/plugin, as
// upstream's main does, would link every plugin together with the AWS, Azure and GCP SDKs, slowing
// the cold build and bloating the binary for plugins the cluster never configures. There is no
// forward plugin, because the machine has no upstream DNS to forward to.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/hosts"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/loop"
	_ "github.com/coredns/coredns/plugin/metrics"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/reload"
)

// The Corefile parser only accepts directives in this list, and plugins run in this order
// whatever order the Corefile names them in. Upstream generates the full list from plugin.cfg;
// this is its subset for the plugins linked in, keeping plugin.cfg's relative order (v1.13.2).
// metadata and transfer are linked in anyway, because the kubernetes plugin imports them, so
// they are listed too rather than being registered but unusable.
func init() {
	dnsserver.Directives = []string{
		"metadata",
		"reload",
		"bind",
		"ready",
		"health",
		"prometheus",
		"errors",
		"log",
		"loadbalance",
		"cache",
		"transfer",
		"hosts",
		"kubernetes",
		"loop",
	}
}

func main() {
	coremain.Run()
}
