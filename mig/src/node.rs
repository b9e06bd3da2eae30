//! The name of the node a process runs on, as dcgm-exporter labels its
//! series (`Hostname`): `$NODE_NAME` when set (Kubernetes' downward API,
//! `spec.nodeName`, inside a pod whose own host name is the pod's), else the
//! kernel's host name.

/// `$NODE_NAME`, else `/proc/sys/kernel/hostname`, else empty.
pub fn node_name() -> String {
    node_name_from(
        std::env::var("NODE_NAME").ok(),
        std::fs::read_to_string("/proc/sys/kernel/hostname").ok(),
    )
}

fn node_name_from(env: Option<String>, kernel: Option<String>) -> String {
    env.map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty())
        .or_else(|| kernel.map(|n| n.trim().to_string()))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_name_prefers_the_environment_then_the_kernel() {
        let kernel = Some("host-a\n".to_string());
        assert_eq!(
            node_name_from(Some("node-7".into()), kernel.clone()),
            "node-7"
        );
        assert_eq!(node_name_from(Some(" ".into()), kernel.clone()), "host-a");
        assert_eq!(node_name_from(None, kernel), "host-a");
        assert_eq!(node_name_from(None, None), "");
    }
}
