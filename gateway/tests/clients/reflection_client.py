"""gRPC server reflection (v1alpha) against the gateway, with grpcio-reflection.

    target/client-venv/bin/python gateway/tests/clients/reflection_client.py ADDR \
        [--expect SERVICE ...] [--timeout SECONDS]

Lists the services of the gateway at ADDR (host:port, plaintext) through the
`grpc.reflection.v1alpha.ServerReflection` stub that grpcio-reflection ships,
as grpcurl and Postman do, and prints them one per line (`service NAME`).
Asserts that `mig.inference.v1.Inference` and `grpc.health.v1.Health` are
listed, plus every `--expect SERVICE`, and that nothing of the internal
`mig.worker.*` API is. Then fetches the file descriptor that defines
`mig.inference.v1.Inference` (file_containing_symbol), parses it with
protobuf's descriptor_pb2 and asserts the service has Generate,
GenerateStream, Embed and ListModels. Ends with one line:
`ok reflection v1alpha: N services, Inference methods: ...`; exits non-zero
(AssertionError, or the gRPC error) otherwise.
"""

import argparse
import sys

import grpc
from google.protobuf import descriptor_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

INFERENCE = "mig.inference.v1.Inference"
HEALTH = "grpc.health.v1.Health"
INFERENCE_METHODS = ("Generate", "GenerateStream", "Embed", "ListModels")
INTERNAL_PREFIX = "mig.worker"


def reflect(stub, request, timeout):
    """One request on the bidirectional ServerReflectionInfo stream, its one
    answer; an error_response fails the assertion with the server's words."""
    responses = list(stub.ServerReflectionInfo(iter([request]), timeout=timeout))
    assert len(responses) == 1, f"expected one reflection answer, got {len(responses)}"
    response = responses[0]
    which = response.WhichOneof("message_response")
    assert which != "error_response", (
        f"reflection error {response.error_response.error_code}: "
        f"{response.error_response.error_message}"
    )
    return response, which


def list_services(stub, timeout):
    response, which = reflect(
        stub, reflection_pb2.ServerReflectionRequest(list_services=""), timeout
    )
    assert which == "list_services_response", f"unexpected answer {which}"
    return [s.name for s in response.list_services_response.service]


def service_descriptor(stub, service, timeout):
    """The ServiceDescriptorProto of `service`, from the file descriptors the
    server sends for file_containing_symbol (the file itself, and possibly
    its dependencies)."""
    response, which = reflect(
        stub,
        reflection_pb2.ServerReflectionRequest(file_containing_symbol=service),
        timeout,
    )
    assert which == "file_descriptor_response", f"unexpected answer {which}"
    package, _, name = service.rpartition(".")
    files = []
    for raw in response.file_descriptor_response.file_descriptor_proto:
        proto = descriptor_pb2.FileDescriptorProto()
        proto.ParseFromString(raw)
        files.append(proto.name)
        if proto.package != package:
            continue
        for svc in proto.service:
            if svc.name == name:
                return proto, svc
    raise AssertionError(f"no file descriptor defines {service} (got files {files})")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("addr", help="gateway address, host:port (plaintext)")
    parser.add_argument(
        "--expect",
        action="append",
        default=[],
        metavar="SERVICE",
        help="a further service that must be listed (repeatable)",
    )
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per call")
    args = parser.parse_args()

    with grpc.insecure_channel(args.addr) as channel:
        try:
            grpc.channel_ready_future(channel).result(timeout=args.timeout)
        except grpc.FutureTimeoutError:
            raise AssertionError(f"no gRPC server at {args.addr} within {args.timeout} s") from None
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)

        services = list_services(stub, args.timeout)
        for name in services:
            print(f"service {name}")
        for wanted in (INFERENCE, HEALTH, *args.expect):
            assert wanted in services, f"{wanted} is not listed: {services}"
        internal = [s for s in services if s.startswith(INTERNAL_PREFIX)]
        assert not internal, f"internal services are listed publicly: {internal}"

        file_proto, service = service_descriptor(stub, INFERENCE, args.timeout)
        methods = [m.name for m in service.method]
        missing = [m for m in INFERENCE_METHODS if m not in methods]
        assert not missing, (
            f"{INFERENCE} ({file_proto.name}) lacks {missing}; it has {methods}"
        )

    print(
        f"ok reflection v1alpha: {len(services)} services, "
        f"Inference methods: {', '.join(methods)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
