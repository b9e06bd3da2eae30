#!/usr/bin/env python3
"""Checks deploy/systemd's units offline.

- `systemd-analyze verify` where it exists (unknown keys, bad values,
  missing dependencies): on a copy whose ExecStart/ExecReload binaries
  (/usr/local/bin/..., not installed here) point at stand-in executables,
  since verify refuses a command that is not there. Any line it prints fails.
- The project's rules, with or without it: the gateway runs as a dedicated
  or dynamic user, with NoNewPrivileges=yes, ProtectSystem=strict,
  ProtectHome, PrivateTmp and an empty CapabilityBoundingSet; it Requires=
  and comes After= the MIG layout unit, which is a oneshot that runs
  nvidia-mig-parted apply (or the plan's mig-setup.sh) Before= it.

    scripts/check-systemd.py [DIR]   # default deploy/systemd

Prints `ok <unit>: ...` per unit, or `FAIL ...` lines and exits 1.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

GATEWAY = "mig-gateway.service"
LAYOUT = "mig-mig-layout.service"


def parse(path):
    """{section: {key: [values]}} with continuation lines joined."""
    sections, section, buf = {}, None, ""
    for raw in open(path, encoding="utf-8").read().splitlines():
        line = raw.strip()
        if not buf and (not line or line[0] in "#;"):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        line, buf = buf + line, ""
        if line.startswith("["):
            section = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        section.setdefault(key.strip(), []).append(value.strip())
    return sections


def rules(units):
    problems = []
    gw = units.get(GATEWAY)
    layout = units.get(LAYOUT)
    if not gw or not layout:
        return [f"want {GATEWAY} and {LAYOUT}, have {sorted(units)}"]
    svc, unit = gw.get("Service", {}), gw.get("Unit", {})
    one = lambda s, k: (s.get(k) or [None])[-1]
    if not (one(svc, "User") not in (None, "root", "0") or one(svc, "DynamicUser") == "yes"):
        problems.append(f"{GATEWAY}: no dedicated User= or DynamicUser=yes")
    for key, want in (("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"),
                      ("ProtectHome", "yes"), ("PrivateTmp", "yes"), ("CapabilityBoundingSet", "")):
        if one(svc, key) != want:
            problems.append(f"{GATEWAY}: {key}={one(svc, key)}, want {key}={want}")
    if not re.match(r"/usr/local/bin/mig-gateway up\b", one(svc, "ExecStart") or ""):
        problems.append(f"{GATEWAY}: ExecStart is not /usr/local/bin/mig-gateway up")
    for key in ("Requires", "After"):
        if LAYOUT not in " ".join(unit.get(key, [])).split():
            problems.append(f"{GATEWAY}: {key}= lacks {LAYOUT}")
    lsvc, lunit = layout.get("Service", {}), layout.get("Unit", {})
    if one(lsvc, "Type") != "oneshot" or one(lsvc, "RemainAfterExit") != "yes":
        problems.append(f"{LAYOUT}: not Type=oneshot with RemainAfterExit=yes")
    if GATEWAY not in " ".join(lunit.get("Before", [])).split():
        problems.append(f"{LAYOUT}: Before= lacks {GATEWAY}")
    start = one(lsvc, "ExecStart") or ""
    if "nvidia-mig-parted apply" not in start and "mig-setup.sh" not in start:
        problems.append(f"{LAYOUT}: ExecStart neither runs nvidia-mig-parted apply nor mig-setup.sh")
    return problems


def verify(directory, names):
    """Lines `systemd-analyze verify` prints about a stand-in copy, or None
    when there is no systemd-analyze."""
    tool = shutil.which("systemd-analyze")
    if not tool:
        return None
    with tempfile.TemporaryDirectory(prefix="check-systemd.") as tmp:
        bindir = os.path.join(tmp, "bin")
        os.mkdir(bindir)
        paths = []
        for name in names:
            text = open(os.path.join(directory, name), encoding="utf-8").read()

            def stub(m):
                exe = os.path.join(bindir, os.path.basename(m.group(0)))
                with open(exe, "w") as f:
                    f.write("#!/bin/sh\n")
                os.chmod(exe, 0o755)
                return exe

            text = re.sub(r"/usr/local/bin/[A-Za-z0-9_.-]+", stub, text)
            path = os.path.join(tmp, name)
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
            paths.append(path)
        run = subprocess.run([tool, "verify", "--man=no", "--generators=no", *paths],
                             capture_output=True, text=True, timeout=60)
        lines = [l for l in (run.stdout + run.stderr).splitlines() if l.strip()]
        if run.returncode != 0 and not lines:
            lines = [f"systemd-analyze verify exited {run.returncode}"]
        return [l.replace(tmp + "/", "") for l in lines]


def main():
    directory = sys.argv[1] if len(sys.argv) > 1 else "deploy/systemd"
    names = sorted(f for f in os.listdir(directory) if f.endswith((".service", ".timer", ".target")))
    units = {n: parse(os.path.join(directory, n)) for n in names}
    problems = rules(units)
    lines = verify(directory, names)
    if lines:
        problems.extend(f"systemd-analyze verify: {l}" for l in lines)
    for p in problems:
        print(f"FAIL {p}")
    if problems:
        return 1
    how = ("systemd-analyze verify clean" if lines is not None
           else "no systemd-analyze here: the project's rules only")
    for n in names:
        print(f"ok {n}: {how}, rules hold")
    return 0


if __name__ == "__main__":
    sys.exit(main())
