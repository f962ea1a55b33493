//! The lines describe.go prints for each volume source, in pods (`Volumes:`) and persistent volumes
//! (`Source:`), with the PV variants where kubectl has them (secret references with namespaces).

use super::format::*;
use serde_json::Value;

/// The `Source:`/volume lines of every volume type kubectl knows; `pv` selects the PV variants.
pub(super) fn volume_source(w: &mut Writer, src: &Value, pv: bool) {
    let has = |k: &str| src.get(k).is_some_and(|v| !v.is_null());
    if has("hostPath") {
        let t = src.pointer("/hostPath/type").and_then(Value::as_str).unwrap_or("<none>");
        w!(
            w,
            2,
            "Type:\tHostPath (bare host directory volume)\n    Path:\t{}\n    HostPathType:\t{t}\n",
            s(src, "/hostPath/path")
        );
    } else if has("emptyDir") {
        let limit = match src.pointer("/emptyDir/sizeLimit").and_then(Value::as_str) {
            Some(l) if kvol_api::parse_quantity(l).is_ok_and(|q| !q.is_zero() && !q.is_negative()) => {
                quantity(src, "/emptyDir/sizeLimit")
            }
            _ => "<unset>".into(),
        };
        w!(w, 2, "Type:\tEmptyDir (a temporary directory that shares a pod's lifetime)\n    Medium:\t{}\n    SizeLimit:\t{limit}\n", s(src, "/emptyDir/medium"));
    } else if has("gcePersistentDisk") {
        let g = &src["gcePersistentDisk"];
        w!(w, 2, "Type:\tGCEPersistentDisk (a Persistent Disk resource in Google Compute Engine)\n    PDName:\t{}\n    FSType:\t{}\n    Partition:\t{}\n    ReadOnly:\t{}\n",
            s(g, "/pdName"), s(g, "/fsType"), g["partition"].as_i64().unwrap_or(0), b(g, "/readOnly"));
    } else if has("awsElasticBlockStore") {
        let a = &src["awsElasticBlockStore"];
        w!(w, 2, "Type:\tAWSElasticBlockStore (a Persistent Disk resource in AWS)\n    VolumeID:\t{}\n    FSType:\t{}\n    Partition:\t{}\n    ReadOnly:\t{}\n",
            s(a, "/volumeID"), s(a, "/fsType"), a["partition"].as_i64().unwrap_or(0), b(a, "/readOnly"));
    } else if has("gitRepo") {
        w!(w, 2, "Type:\tGitRepo (a volume that is pulled from git when the pod is created)\n    Repository:\t{}\n    Revision:\t{}\n", s(src, "/gitRepo/repository"), s(src, "/gitRepo/revision"));
    } else if has("secret") {
        w!(
            w,
            2,
            "Type:\tSecret (a volume populated by a Secret)\n    SecretName:\t{}\n    Optional:\t{}\n",
            s(src, "/secret/secretName"),
            b(src, "/secret/optional")
        );
    } else if has("configMap") {
        w!(
            w,
            2,
            "Type:\tConfigMap (a volume populated by a ConfigMap)\n    Name:\t{}\n    Optional:\t{}\n",
            s(src, "/configMap/name"),
            b(src, "/configMap/optional")
        );
    } else if has("nfs") {
        w!(w, 2, "Type:\tNFS (an NFS mount that lasts the lifetime of a pod)\n    Server:\t{}\n    Path:\t{}\n    ReadOnly:\t{}\n", s(src, "/nfs/server"), s(src, "/nfs/path"), b(src, "/nfs/readOnly"));
    } else if has("glusterfs") {
        let g = &src["glusterfs"];
        if pv {
            let ns = g.get("endpointsNamespace").and_then(Value::as_str).unwrap_or("<unset>");
            w!(w, 2, "Type:\tGlusterfs (a Glusterfs mount on the host that shares a pod's lifetime)\n    EndpointsName:\t{}\n    EndpointsNamespace:\t{ns}\n    Path:\t{}\n    ReadOnly:\t{}\n", s(g, "/endpoints"), s(g, "/path"), b(g, "/readOnly"));
        } else {
            w!(w, 2, "Type:\tGlusterfs (a Glusterfs mount on the host that shares a pod's lifetime)\n    EndpointsName:\t{}\n    Path:\t{}\n    ReadOnly:\t{}\n", s(g, "/endpoints"), s(g, "/path"), b(g, "/readOnly"));
        }
    } else if has("persistentVolumeClaim") {
        w!(w, 2, "Type:\tPersistentVolumeClaim (a reference to a PersistentVolumeClaim in the same namespace)\n    ClaimName:\t{}\n    ReadOnly:\t{}\n", s(src, "/persistentVolumeClaim/claimName"), b(src, "/persistentVolumeClaim/readOnly"));
    } else if has("ephemeral") {
        w.w(2, "Type:\tEphemeralVolume (an inline specification for a volume that gets created and deleted with the pod)\n");
    } else if has("rbd") {
        let r = &src["rbd"];
        let secret = if pv {
            go_ref(r, "/secretRef", "SecretReference")
        } else {
            go_ref(r, "/secretRef", "LocalObjectReference")
        };
        w!(w, 2, "Type:\tRBD (a Rados Block Device mount on the host that shares a pod's lifetime)\n    CephMonitors:\t{}\n    RBDImage:\t{}\n    FSType:\t{}\n    RBDPool:\t{}\n    RadosUser:\t{}\n    Keyring:\t{}\n    SecretRef:\t{secret}\n    ReadOnly:\t{}\n",
            go_list(r, "/monitors"), s(r, "/image"), s(r, "/fsType"), s(r, "/pool"), s(r, "/user"), s(r, "/keyring"), b(r, "/readOnly"));
    } else if has("downwardAPI") {
        w.w(2, "Type:\tDownwardAPI (a volume populated by information about the pod)\n    Items:\n");
        for item in arr(src, "/downwardAPI/items") {
            if item.get("fieldRef").is_some() {
                w!(w, 3, "{} -> {}\n", s(item, "/fieldRef/fieldPath"), s(item, "/path"));
            }
            if item.get("resourceFieldRef").is_some() {
                w!(w, 3, "{} -> {}\n", s(item, "/resourceFieldRef/resource"), s(item, "/path"));
            }
        }
    } else if has("local") && pv {
        w!(
            w,
            2,
            "Type:\tLocalVolume (a persistent volume backed by local storage on a node)\n    Path:\t{}\n",
            s(src, "/local/path")
        );
    } else if has("cephfs") {
        let c = &src["cephfs"];
        let secret = if pv {
            go_ref(c, "/secretRef", "SecretReference")
        } else {
            go_ref(c, "/secretRef", "LocalObjectReference")
        };
        w!(w, 2, "Type:\tCephFS (a CephFS mount on the host that shares a pod's lifetime)\n    Monitors:\t{}\n    Path:\t{}\n    User:\t{}\n    SecretFile:\t{}\n    SecretRef:\t{secret}\n    ReadOnly:\t{}\n",
            go_list(c, "/monitors"), s(c, "/path"), s(c, "/user"), s(c, "/secretFile"), b(c, "/readOnly"));
    } else if has("fc") {
        let f = &src["fc"];
        let wwns: Vec<&str> = arr(f, "/targetWWNs").iter().filter_map(Value::as_str).collect();
        let lun = f.get("lun").and_then(Value::as_i64).map(|l| l.to_string()).unwrap_or_else(|| "<none>".into());
        w!(w, 2, "Type:\tFC (a Fibre Channel disk)\n    TargetWWNs:\t{}\n    LUN:\t{lun}\n    FSType:\t{}\n    ReadOnly:\t{}\n", wwns.join(", "), s(f, "/fsType"), b(f, "/readOnly"));
    } else if has("flexVolume") {
        let f = &src["flexVolume"];
        let secret = if pv {
            go_ref(f, "/secretRef", "SecretReference")
        } else {
            go_ref(f, "/secretRef", "LocalObjectReference")
        };
        w!(w, 2, "Type:\tFlexVolume (a generic volume resource that is provisioned/attached using an exec based plugin)\n    Driver:\t{}\n    FSType:\t{}\n    SecretRef:\t{secret}\n    ReadOnly:\t{}\n    Options:\t{}\n",
            s(f, "/driver"), s(f, "/fsType"), b(f, "/readOnly"), go_map(f, "/options"));
    } else if has("projected") {
        w.w(2, "Type:\tProjected (a volume that contains injected data from multiple sources)\n");
        for source in arr(src, "/projected/sources") {
            if source.get("secret").is_some() {
                w!(
                    w,
                    2,
                    "SecretName:\t{}\n    Optional:\t{}\n",
                    s(source, "/secret/name"),
                    b(source, "/secret/optional")
                );
            } else if source.get("downwardAPI").is_some() {
                w.w(2, "DownwardAPI:\ttrue\n");
            } else if source.get("configMap").is_some() {
                w!(
                    w,
                    2,
                    "ConfigMapName:\t{}\n    Optional:\t{}\n",
                    s(source, "/configMap/name"),
                    b(source, "/configMap/optional")
                );
            } else if source.get("serviceAccountToken").is_some() {
                w!(
                    w,
                    2,
                    "TokenExpirationSeconds:\t{}\n",
                    source.pointer("/serviceAccountToken/expirationSeconds").and_then(Value::as_i64).unwrap_or(3600)
                );
            }
        }
    } else if has("csi") {
        let c = &src["csi"];
        if pv {
            w!(w, 2, "Type:\tCSI (a Container Storage Interface (CSI) volume source)\n    Driver:\t{}\n    FSType:\t{}\n    VolumeHandle:\t{}\n    ReadOnly:\t{}\n", s(c, "/driver"), s(c, "/fsType"), s(c, "/volumeHandle"), b(c, "/readOnly"));
        } else {
            w!(w, 2, "Type:\tCSI (a Container Storage Interface (CSI) volume source)\n    Driver:\t{}\n    FSType:\t{}\n    ReadOnly:\t{}\n", s(c, "/driver"), s(c, "/fsType"), b(c, "/readOnly"));
        }
        w.w(2, "VolumeAttributes:\t");
        match obj(c, "/volumeAttributes").filter(|m| !m.is_empty()) {
            None => w.line("<none>"),
            Some(attrs) => {
                let mut keys: Vec<&String> = attrs.keys().collect();
                keys.sort();
                for (i, k) in keys.iter().enumerate() {
                    if i != 0 {
                        w.w(2, "");
                        w.w(2, "\t");
                    }
                    let line = format!("{k}={}", attrs[*k].as_str().unwrap_or_default());
                    w!(
                        w,
                        2,
                        "{}\n",
                        if line.len() > MAX_ANNOTATION_LEN {
                            format!("{}...", &line[..MAX_ANNOTATION_LEN])
                        } else {
                            line
                        }
                    );
                }
            }
        }
    } else if has("image") && !pv {
        w!(
            w,
            2,
            "Type:\tImage (a container image or OCI artifact)\n    Reference:\t{}\n    PullPolicy:\t{}\n",
            s(src, "/image/reference"),
            s(src, "/image/pullPolicy")
        );
    } else {
        w.w(1, "<unknown>\n");
    }
}

pub(super) fn volumes(w: &mut Writer, volumes: &[Value]) {
    if volumes.is_empty() {
        w.w(0, "Volumes:\t<none>\n");
        return;
    }
    w.w(0, "Volumes:\n");
    for v in volumes {
        w!(w, 1, "{}:\n", s(v, "/name"));
        volume_source(w, v, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn flex_volume_options_print_as_a_go_map() {
        let v = json!({"flexVolume": {"driver": "k8s/nfs", "fsType": "nfs", "options": {"share": "s", "server": "1.2.3.4"}}});
        let mut w = Writer::new();
        volume_source(&mut w, &v, false);
        let out = w.finish();
        assert!(out.contains("Options:    map[server:1.2.3.4 share:s]"), "{out}");
        assert!(out.contains("SecretRef:  nil"), "{out}");
    }
}
