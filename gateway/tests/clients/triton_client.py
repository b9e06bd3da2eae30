"""KServe v2 gRPC against the gateway with NVIDIA's own client, tritonclient.

    target/client-venv/bin/python gateway/tests/clients/triton_client.py ADDR \
        [--key KEY] [--model MODEL] [--embed-model MODEL] [--max-tokens N]

Talks to the gateway at ADDR (host:port, plaintext) as a Triton user does,
with `tritonclient.grpc` and, when --key is given, the API key in
`authorization: Bearer KEY` metadata on every call:

- is_server_live, is_server_ready, is_model_ready;
- get_model_metadata and get_model_config of the generation model:
  `text_input` BYTES in, `text_output` BYTES out, max_batch_size 0,
  decoupled;
- infer: `text_input` (BYTES, a numpy object array), `max_tokens` (INT32)
  and `temperature` (FP32, 0: greedy); prints the text and the response
  parameters (usage, finish reason, serving slice);
- start_stream + async_stream_infer with enable_empty_final_response: a
  request with an unknown input first (refused in-band, naming it, the
  stream going on), then the same generation as infer, its chunks collected
  by the callback until the response flagged `triton_final_response`; the
  chunks must make infer's text, and the final flag come once, on an empty
  response;
- infer on the embedding model with two texts: `embedding` FP32 [2, dim],
  each of L2 norm 1;
- the service's wire: every field of every message the gateway describes
  through gRPC reflection (grpcio-reflection) has the name, number and type
  of tritonclient's own `service_pb2` / `model_config_pb2`.

Each check prints an `ok ...` line; exits non-zero (AssertionError, or the
client's InferenceServerException) otherwise.
"""

import argparse
import json
import math
import queue
import sys

import grpc
import numpy as np
import tritonclient.grpc as grpcclient
from google.protobuf import descriptor_pool
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from tritonclient.grpc import service_pb2
from tritonclient.utils import InferenceServerException

PROMPT = "The capital of France is"
SERVICE = "inference.GRPCInferenceService"
FINAL = "triton_final_response"


def parameter(response, name):
    """A response parameter's value, whichever field of the oneof holds it."""
    p = response.parameters[name]
    return getattr(p, p.WhichOneof("parameter_choice"))


def generation_inputs(max_tokens):
    text = grpcclient.InferInput("text_input", [1], "BYTES")
    text.set_data_from_numpy(np.array([PROMPT.encode()], dtype=np.object_))
    tokens = grpcclient.InferInput("max_tokens", [1], "INT32")
    tokens.set_data_from_numpy(np.array([max_tokens], dtype=np.int32))
    temperature = grpcclient.InferInput("temperature", [1], "FP32")
    temperature.set_data_from_numpy(np.array([0.0], dtype=np.float32))
    return [text, tokens, temperature]


def check_metadata(client, model, headers):
    assert client.is_server_live(headers=headers), "server not live"
    assert client.is_server_ready(headers=headers), "server not ready"
    assert client.is_model_ready(model, headers=headers), f"{model} not ready"
    assert not client.is_model_ready("no-such-model", headers=headers)
    print(f"ok live, ready, model {model} ready")

    metadata = client.get_model_metadata(model, headers=headers)
    inputs = {t.name: t for t in metadata.inputs}
    assert inputs["text_input"].datatype == "BYTES", metadata
    assert [t.name for t in metadata.outputs] == ["text_output"], metadata
    assert metadata.outputs[0].datatype == "BYTES", metadata
    print(
        f"ok metadata: platform {metadata.platform}, versions {list(metadata.versions)}, "
        f"inputs {', '.join(f'{t.name} {t.datatype}' for t in metadata.inputs)}"
    )

    config = client.get_model_config(model, headers=headers).config
    assert config.max_batch_size == 0, config
    assert config.model_transaction_policy.decoupled, config
    print(
        f"ok config: backend {config.backend}, max_batch_size 0, decoupled, "
        f"{len(config.input)} inputs, output {config.output[0].name}"
    )


def check_infer(client, model, headers, max_tokens):
    result = client.infer(
        model,
        generation_inputs(max_tokens),
        outputs=[grpcclient.InferRequestedOutput("text_output")],
        request_id="infer-1",
        headers=headers,
    )
    text = result.as_numpy("text_output")[0].decode("utf-8")
    response = result.get_response()
    assert response.id == "infer-1", response.id
    completion = parameter(response, "completion_tokens")
    assert 0 < completion <= max_tokens, completion
    print(
        f"ok infer: {json.dumps(text, ensure_ascii=False)} ({parameter(response, 'prompt_tokens')} prompt tokens, "
        f"{completion} generated, finish {parameter(response, 'finish_reason')}, "
        f"slice {parameter(response, 'slice')} {parameter(response, 'profile')})"
    )
    return text


def check_stream(client, model, headers, max_tokens, whole):
    answers = queue.Queue()
    client.start_stream(
        callback=lambda result, error: answers.put((result, error)), headers=headers
    )
    try:
        # An input the model does not take: refused in-band, naming it.
        bogus = grpcclient.InferInput("bogus_input", [1], "BYTES")
        bogus.set_data_from_numpy(np.array([b"x"], dtype=np.object_))
        client.async_stream_infer(
            model, generation_inputs(max_tokens) + [bogus], request_id="bad-1"
        )
        result, error = answers.get(timeout=120)
        assert result is None and error is not None, (result, error)
        assert "INVALID_ARGUMENT" in error.message() and "`bogus_input`" in error.message(), error
        print(f"ok stream error in-band: {error.message()[:90]}...")

        # The same generation as infer's, chunk by chunk, on the same stream.
        client.async_stream_infer(
            model,
            generation_inputs(max_tokens),
            request_id="stream-1",
            enable_empty_final_response=True,
        )
        chunks, finals = [], 0
        while True:
            result, error = answers.get(timeout=120)
            if error is not None:
                raise error
            response = result.get_response()
            assert response.id == "stream-1", response.id
            final = response.parameters[FINAL].bool_param
            out = result.as_numpy("text_output")
            if final:
                finals += 1
                assert out is None, "the final flag comes on an empty response"
                assert parameter(response, "completion_tokens") > 0
                break
            chunks.append(out[0].decode("utf-8"))
    finally:
        client.stop_stream()
    assert finals == 1 and answers.empty(), "one final flag, nothing after it"
    assert "".join(chunks) == whole, (chunks, whole)
    print(
        f"ok stream: {len(chunks)} chunks, then one empty response flagged "
        f"{FINAL}; the chunks make infer's text"
    )


def check_embed(client, model, headers):
    texts = grpcclient.InferInput("text_input", [2], "BYTES")
    texts.set_data_from_numpy(np.array([b"a cat sleeps", b"a dog runs"], dtype=np.object_))
    result = client.infer(model, [texts], headers=headers)
    vectors = result.as_numpy("embedding")
    assert vectors.dtype == np.float32 and vectors.shape[0] == 2, vectors.shape
    norms = [math.sqrt(float(np.dot(v, v))) for v in vectors]
    assert all(abs(n - 1.0) < 1e-3 for n in norms), norms
    print(f"ok embed: {model} {list(vectors.shape)} FP32, norms {norms[0]:.4f} {norms[1]:.4f}")


def check_wire(addr):
    """Every field the gateway declares has tritonclient's name, number and
    type, so both sides read the same bytes."""
    channel = grpc.insecure_channel(addr)
    pool = descriptor_pool.DescriptorPool(ProtoReflectionDescriptorDatabase(channel))
    served = pool.FindServiceByName(SERVICE)
    theirs = service_pb2.DESCRIPTOR.pool
    triton = theirs.FindServiceByName(SERVICE)
    assert [m.name for m in served.methods] == [m.name for m in triton.methods]
    fields, seen = 0, set()

    def compare(message):
        nonlocal fields
        if message.full_name in seen:
            return
        seen.add(message.full_name)
        other = theirs.FindMessageTypeByName(message.full_name)
        for field in message.fields:
            mirror = other.fields_by_name.get(field.name)
            assert mirror is not None, f"{message.full_name}.{field.name} is not Triton's"
            assert (field.number, field.type) == (mirror.number, mirror.type), (
                f"{message.full_name}.{field.name}"
            )
            fields += 1
            if field.message_type is not None:
                compare(field.message_type)

    for method in served.methods:
        mine = triton.methods_by_name[method.name]
        assert method.input_type.full_name == mine.input_type.full_name, method.name
        assert method.output_type.full_name == mine.output_type.full_name, method.name
        compare(method.input_type)
        compare(method.output_type)
    channel.close()
    print(f"ok wire: {len(served.methods)} methods, {fields} fields as tritonclient's")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("addr", help="host:port of the gateway")
    parser.add_argument("--key", help="API key, sent as `authorization: Bearer KEY`")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--embed-model", default="minilm-l6")
    parser.add_argument("--max-tokens", type=int, default=12)
    args = parser.parse_args()
    headers = {"authorization": f"Bearer {args.key}"} if args.key else None

    client = grpcclient.InferenceServerClient(url=args.addr)
    try:
        check_metadata(client, args.model, headers)
        whole = check_infer(client, args.model, headers, args.max_tokens)
        check_stream(client, args.model, headers, args.max_tokens, whole)
        check_embed(client, args.embed_model, headers)
    except InferenceServerException as e:
        print(f"tritonclient: {e}", file=sys.stderr)
        raise
    finally:
        client.close()
    check_wire(args.addr)


if __name__ == "__main__":
    main()
