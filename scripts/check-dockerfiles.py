#!/usr/bin/env python3
"""A small Dockerfile linter for the rules that matter here (hadolint is not
reachable from the project's machines):

- every FROM names its image by tag or digest, never `latest`, never a
  variable; a later FROM may name an earlier stage;
- the final stage switches to a non-root USER (not root, not uid 0);
- no ENV or ARG named like a secret (token, password, secret, key...;
  `..._FILE`/`..._PATH` names, which point at a mounted file, are fine), and
  no COPY/ADD of files named like secrets or keys;
- a HEALTHCHECK, or a comment saying why there is none (`No HEALTHCHECK:`).

    scripts/check-dockerfiles.py [DIR...]   # default deploy/docker

Checks every `*Dockerfile` in each DIR; prints `ok <file>: ...` per file, or
`FAIL <file>:<line>: ...` per problem and exits 1.
"""
import os
import re
import sys

SECRET_NAME = re.compile(r"(SECRET|TOKEN|PASSWORD|PASSWD|API_?KEY|PRIVATE_?KEY|ACCESS_?KEY|CREDENTIAL)", re.I)
SECRET_FILE = re.compile(
    r"(^|/)(id_rsa|id_ed25519|id_ecdsa|\.env|\.netrc|\.npmrc|\.pypirc|credentials?(\.\w+)?|tenants[^/]*\.toml)$"
    r"|\.(pem|key|p12|pfx|jks)$|secret|token|passw",
    re.I,
)


def instructions(text):
    """(line number, KEYWORD, arguments) with continuations joined."""
    out, buf, start = [], "", 0
    for n, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not buf and (not stripped or stripped.startswith("#")):
            continue
        if buf and stripped.startswith("#"):
            continue
        if not buf:
            start = n
        if stripped.endswith("\\"):
            buf += stripped[:-1] + " "
            continue
        buf += stripped
        keyword, _, args = buf.partition(" ")
        out.append((start, keyword.upper(), args.strip()))
        buf = ""
    return out


def check(path):
    name = os.path.basename(path)
    text = open(path, encoding="utf-8").read()
    problems, bases = [], []
    stages = set()
    final_user = None
    saw_from = False
    for line, kw, args in instructions(text):
        where = f"{name}:{line}"
        if kw == "FROM":
            saw_from = True
            final_user = None
            words = [w for w in args.split() if not w.startswith("--")]
            image = words[0] if words else ""
            if len(words) >= 3 and words[1].upper() == "AS":
                stages.add(words[2].lower())
            if image.lower() in stages or image == "scratch":
                continue
            if "$" in image:
                problems.append(f"{where}: FROM {image}: a variable, not a pinned image")
                continue
            tag = ""
            if "@" in image:
                bases.append(image)
                continue
            last = image.rsplit("/", 1)[-1]
            if ":" in last:
                tag = last.split(":", 1)[1]
            if not tag:
                problems.append(f"{where}: FROM {image}: no tag or digest (means latest)")
            elif tag == "latest":
                problems.append(f"{where}: FROM {image}: latest is not pinned")
            else:
                bases.append(image)
        elif kw == "USER":
            final_user = args.split()[0] if args else ""
        elif kw in ("ENV", "ARG"):
            for m in re.finditer(r"(?:^|\s)([A-Za-z_][A-Za-z0-9_]*)(?==|\s|$)", args):
                var = m.group(1)
                if SECRET_NAME.search(var) and not re.search(r"_(FILE|PATH|DIR)$", var, re.I):
                    problems.append(f"{where}: {kw} {var}: named like a secret; mount it at run time")
        elif kw in ("COPY", "ADD"):
            words = [w for w in args.split() if not w.startswith("--")]
            if args.startswith("["):
                words = re.findall(r'"([^"]*)"', args)
            for src in words[:-1]:
                if SECRET_FILE.search(src):
                    problems.append(f"{where}: {kw} {src}: a secret or key file in the image")
    if not saw_from:
        problems.append(f"{name}: no FROM")
    if final_user is None:
        problems.append(f"{name}: the final stage sets no USER (runs as root)")
    elif final_user.split(":")[0] in ("root", "0"):
        problems.append(f"{name}: the final stage's USER {final_user} is root")
    has_healthcheck = any(kw == "HEALTHCHECK" for _, kw, _ in instructions(text))
    documented = re.search(r"^#.*No HEALTHCHECK:", text, re.M)
    if not has_healthcheck and not documented:
        problems.append(f"{name}: no HEALTHCHECK and no `# No HEALTHCHECK: <why>` comment")
    if problems:
        return problems, None
    health = "HEALTHCHECK" if has_healthcheck else "no HEALTHCHECK (documented why)"
    return [], f"ok {name}: FROM pinned ({', '.join(bases)}), non-root USER {final_user}, no secrets, {health}"


def main():
    dirs = sys.argv[1:] or ["deploy/docker"]
    files = sorted(
        os.path.join(d, f) for d in dirs for f in os.listdir(d) if f.endswith("Dockerfile")
    )
    if not files:
        print(f"FAIL no *Dockerfile in {' '.join(dirs)}")
        return 1
    failed = False
    for path in files:
        problems, ok = check(path)
        for p in problems:
            print(f"FAIL {p}")
        failed |= bool(problems)
        if ok:
            print(ok)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
