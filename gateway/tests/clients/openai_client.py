"""OpenAI's official Python SDK against the gateway's HTTP front.

    openai_client.py BASE_URL --key KEY --other-key KEY --quota-key KEY \
        --model smollm2-135m --embed-model minilm-l6

`--key` may call both models (and `ghost`, served nowhere); `--other-key` only the embedding model;
`--quota-key`'s tenant has fewer tokens a minute than one prompt. Every
check is an assertion; each passed step prints one `ok ...` line, and the
greedy chat's text a `chat-text <json>` line for the caller to compare
with the gRPC API's answer.
"""

import argparse
import base64
import http.client
import json
import math
import struct
import urllib.parse

import openai

CHAT = [
    {"role": "system", "content": "You are brief."},
    {"role": "user", "content": "Name three colours."},
]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("base_url")
    p.add_argument("--key", required=True)
    p.add_argument("--other-key", required=True)
    p.add_argument("--quota-key", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--embed-model", required=True)
    a = p.parse_args()
    client = openai.OpenAI(base_url=a.base_url, api_key=a.key, max_retries=0, timeout=120)

    ids = [m.id for m in client.models.list()]
    assert a.model in ids and a.embed_model in ids, ids
    assert client.models.retrieve(a.model).id == a.model
    print(f"ok models: {ids}")

    # A whole chat, greedy: the same answer the gRPC API gives.
    whole = client.chat.completions.create(
        model=a.model, messages=CHAT, max_tokens=12, temperature=0, seed=7, user="test-user"
    )
    choice = whole.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content, whole
    assert choice.finish_reason in ("length", "stop"), choice.finish_reason
    assert 0 < whole.usage.completion_tokens <= 12, whole.usage
    assert whole.usage.total_tokens == whole.usage.prompt_tokens + whole.usage.completion_tokens
    served = whole.model_extra["mig"]["served_by"]
    assert served["slice"] and served["profile"], served
    print(f"chat-text {json.dumps(choice.message.content)}")
    print(f"ok chat: {whole.usage.completion_tokens} tokens on {served['slice']} ({served['profile']})")

    # The same chat streamed: the pieces add up to it, the usage comes last.
    stream = client.chat.completions.create(
        model=a.model,
        messages=CHAT,
        max_completion_tokens=12,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    pieces, finish, usage, roles = [], None, None, []
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
            assert chunk.choices == [], chunk
            continue
        delta = chunk.choices[0].delta
        if delta.role:
            roles.append(delta.role)
        pieces.append(delta.content or "")
        finish = chunk.choices[0].finish_reason or finish
    assert "".join(pieces) == choice.message.content, (pieces, choice.message.content)
    assert roles == ["assistant"], roles
    assert finish == choice.finish_reason, finish
    assert usage is not None and usage.completion_tokens == whole.usage.completion_tokens, usage
    print(f"ok chat stream: {len(pieces)} chunks, usage {usage.prompt_tokens}+{usage.completion_tokens}")

    # A completion with log-probabilities: greedy picks the most likely.
    completion = client.completions.create(
        model=a.model, prompt="The capital of France is", max_tokens=6, temperature=0, logprobs=3
    )
    lp = completion.choices[0].logprobs
    assert len(lp.tokens) == completion.usage.completion_tokens, (lp.tokens, completion.usage)
    for token, logprob, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs):
        assert 0 < len(top) <= 3, top
        assert logprob <= 0 and abs(logprob - max(top.values())) < 1e-5, (token, logprob, top)
    assert "".join(lp.tokens) == completion.choices[0].text
    print(f"ok completion logprobs: {completion.choices[0].text!r} {lp.tokens}")

    chat_lp = client.chat.completions.create(
        model=a.model, messages=CHAT, max_tokens=4, temperature=0, logprobs=True, top_logprobs=2
    )
    content = chat_lp.choices[0].logprobs.content
    assert len(content) == chat_lp.usage.completion_tokens, content
    assert all(len(t.top_logprobs) == 2 and t.logprob <= 0 for t in content), content
    print(f"ok chat logprobs: {[(t.token, round(t.logprob, 3)) for t in content]}")

    # Embeddings: unasked, the SDK asks for base64 and decodes it; floats
    # and base64 on request (base64 then comes back as the string).
    for fmt in (None, "float", "base64"):
        extra = {} if fmt is None else {"encoding_format": fmt}
        emb = client.embeddings.create(
            model=a.embed_model, input=["a cat sits", "a dog runs"], **extra
        )
        assert [d.index for d in emb.data] == [0, 1]
        for d in emb.data:
            values = d.embedding
            if isinstance(values, str):
                raw = base64.b64decode(values)
                values = struct.unpack(f"<{len(raw) // 4}f", raw)
            norm = math.sqrt(sum(v * v for v in values))
            assert abs(norm - 1) < 1e-3, norm
        assert emb.usage.prompt_tokens > 0
        print(f"ok embeddings ({fmt or 'SDK default'}): {len(emb.data)} x {len(values)}")

    # Errors, as the SDK's own exception types.
    def refused(kind, call):
        try:
            call()
        except kind as e:
            return e
        raise AssertionError(f"expected {kind.__name__}")

    bad = openai.OpenAI(base_url=a.base_url, api_key="mig_not-a-key", max_retries=0)
    e = refused(openai.AuthenticationError, lambda: bad.models.list())
    assert e.status_code == 401 and e.body["type"] == "authentication_error", e.body
    print(f"ok bad key: 401 {e.body['message']!r}")

    other = openai.OpenAI(base_url=a.base_url, api_key=a.other_key, max_retries=0)
    assert [m.id for m in other.models.list()] == [a.embed_model]
    e = refused(
        openai.PermissionDeniedError,
        lambda: other.chat.completions.create(model=a.model, messages=CHAT, max_tokens=2),
    )
    assert e.status_code == 403 and e.body["param"] == "model", e.body
    print(f"ok disallowed model: 403 {e.body['message']!r}")

    quota = openai.OpenAI(base_url=a.base_url, api_key=a.quota_key, max_retries=0)
    e = refused(
        openai.RateLimitError,
        lambda: quota.chat.completions.create(model=a.model, messages=CHAT, max_tokens=8),
    )
    retry_after = int(e.response.headers["retry-after"])
    assert e.status_code == 429 and retry_after >= 1, (e.body, retry_after)
    assert "tokens_per_minute" in e.body["message"], e.body
    print(f"ok quota: 429 retry-after {retry_after} {e.body['message']!r}")

    e = refused(
        openai.NotFoundError,
        lambda: client.chat.completions.create(model="ghost", messages=CHAT),
    )
    assert e.body["code"] == "model_not_found", e.body
    e = refused(
        openai.BadRequestError,
        lambda: client.chat.completions.create(model=a.model, messages=CHAT, n=2),
    )
    assert e.body["param"] == "n", e.body
    e = refused(
        openai.BadRequestError,
        lambda: client.chat.completions.create(model=a.model, messages=CHAT, max_tokens=10**6),
    )
    assert "max_tokens" in e.body["message"], e.body
    print(f"ok refusals: 404 unknown model, 400 n=2, 400 {e.body['message']!r}")

    # What the SDK never sends, sent by hand.
    url = urllib.parse.urlsplit(a.base_url)

    def send(method, path, body=None):
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
        headers = {"authorization": f"Bearer {a.key}", "content-type": "application/json"}
        try:
            conn.request(method, path, body=body, headers=headers)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused before the whole body was sent: read the answer
        r = conn.getresponse()
        text = r.read().decode()
        conn.close()
        return r.status, text

    status, text = send("POST", "/v1/chat/completions", b"{not json")
    assert status == 400 and json.loads(text)["error"]["type"] == "invalid_request_error", text
    long = json.dumps({"model": a.model, "messages": CHAT, "max_tokens": "x" * 5000})
    status, text = send("POST", "/v1/chat/completions", long.encode())
    assert status == 400 and json.loads(text)["error"]["param"] == "max_tokens", text
    assert len(text) < 600, f"a long value came back: {len(text)} bytes"
    status, text = send("GET", "/v1/nothing")
    assert status == 404 and json.loads(text)["error"]["code"] == "unknown_url", text
    status, text = send("DELETE", "/v1/models")
    assert status == 405, text
    status, text = send("POST", "/v1/completions", b"x" * (9 * 1024 * 1024))
    assert status == 413, (status, text)
    print("ok raw HTTP: 400 not JSON, 400 max_tokens named and cut, 404 path, 405 method, 413 body")


if __name__ == "__main__":
    main()
