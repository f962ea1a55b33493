//! Compiles `proto/*.proto` (Kubernetes API messages, written from the public definitions) with protox (pure
//! Rust, so no system `protoc` is needed) into a FileDescriptorSet in OUT_DIR, which `src/protobuf.rs` embeds
//! and decodes request bodies with at run time.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "kvol_options.proto",
        "runtime.proto",
        "resource.proto",
        "intstr.proto",
        "meta.proto",
        "core.proto",
        "storage.proto",
    ];
    println!("cargo:rerun-if-changed=build.rs");
    for proto in protos {
        println!("cargo:rerun-if-changed=proto/{proto}");
    }
    let set = protox::Compiler::new(["proto"])?.include_imports(true).open_files(protos)?.encode_file_descriptor_set();
    let out = PathBuf::from(std::env::var("OUT_DIR")?).join("kubernetes.fds");
    std::fs::write(out, set)?;
    Ok(())
}
