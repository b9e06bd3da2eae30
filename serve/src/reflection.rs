//! gRPC reflection in both versions of the protocol: `v1`, and `v1alpha`,
//! which many clients still speak (Python's `grpcio-reflection`, older
//! grpcurl). Each listener describes what it serves and nothing more: the
//! caller passes the descriptor sets; both versions list the same
//! services, themselves included.

use tonic::service::RoutesBuilder;

/// Adds reflection of the services in `sets`, `v1` and `v1alpha`, to
/// `routes`.
pub fn add(
    routes: &mut RoutesBuilder,
    sets: &[&'static [u8]],
) -> Result<(), tonic_reflection::server::Error> {
    let reflection = [
        tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
    ];
    let builder = || {
        sets.iter().chain(&reflection).fold(
            tonic_reflection::server::Builder::configure().include_reflection_service(false),
            |builder, set| builder.register_encoded_file_descriptor_set(set),
        )
    };
    routes
        .add_service(builder().build_v1()?)
        .add_service(builder().build_v1alpha()?);
    Ok(())
}
