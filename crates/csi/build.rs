//! Compiles `proto/*.proto` with protox (pure Rust, so no system `protoc` is needed) and generates the
//! prost messages and tonic clients/servers from the resulting FileDescriptorSet.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["proto/csi.proto", "proto/pluginregistration.proto"];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    let fds = protox::compile(protos, ["proto"])?;
    tonic_prost_build::configure().build_client(true).build_server(true).compile_fds(fds)?;
    Ok(())
}
