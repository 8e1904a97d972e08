#!/usr/bin/env python3
"""Prints a CycloneDX 1.5 JSON SBOM of the Rust crates linked into the imageshare binary.

Read from `cargo metadata` (the resolved graph, filtered to the build platform) and
Cargo.lock (the crates.io checksums): the packages reachable from imageshare through normal
dependencies (not dev- or build-dependencies, which are not in the binary), each with its
version, package URL, declared license and SHA-256, and the dependency graph between them.
Deterministic: same lockfile and commit, same bytes.

    python3 stack/sbom.py REPO_DIR TARGET_TRIPLE COMMIT EPOCH
"""
import datetime
import json
import subprocess
import sys
import tomllib
import uuid

repo, triple, commit, epoch = sys.argv[1:5]
meta = json.loads(subprocess.run(
    ["cargo", "metadata", "--format-version", "1", "--locked", "--filter-platform", triple],
    cwd=repo, check=True, capture_output=True, text=True).stdout)
with open(f"{repo}/Cargo.lock", "rb") as f:
    checksums = {(p["name"], p["version"]): p.get("checksum") for p in tomllib.load(f)["package"]}

packages = {p["id"]: p for p in meta["packages"]}
nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
root = next(p for p in meta["packages"] if p["name"] == "imageshare" and p["source"] is None)


def normal_deps(node):
    """IDs of the dependencies of node that are linked (kind null: normal)."""
    return sorted({d["pkg"] for d in node["deps"]
                   if any(k["kind"] is None for k in d["dep_kinds"])})


reached, todo = set(), [root["id"]]
while todo:
    pid = todo.pop()
    if pid in reached:
        continue
    reached.add(pid)
    todo += normal_deps(nodes[pid])


def purl(p):
    return f"pkg:cargo/{p['name']}@{p['version']}"


def component(p):
    c = {"type": "library" if p["id"] != root["id"] else "application", "bom-ref": purl(p),
         "name": p["name"], "version": p["version"], "purl": purl(p)}
    if p.get("license"):
        c["licenses"] = [{"expression": p["license"]}]
    if checksums.get((p["name"], p["version"])):
        c["hashes"] = [{"alg": "SHA-256", "content": checksums[(p["name"], p["version"])]}]
    if p.get("repository"):
        c["externalReferences"] = [{"type": "vcs", "url": p["repository"]}]
    return c


sbom = {
    "bomFormat": "CycloneDX",
    "specVersion": "1.5",
    "serialNumber": f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, 'imageshare-sbom/' + commit)}",
    "version": 1,
    "metadata": {
        "timestamp": datetime.datetime.fromtimestamp(int(epoch), datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "tools": {"components": [{"type": "application", "name": "imageshare stack/sbom.py (cargo metadata)"}]},
        "component": component(root) | {"properties": [{"name": "git:commit", "value": commit},
                                                        {"name": "cargo:target", "value": triple}]},
    },
    "components": [component(packages[i]) for i in sorted(reached, key=lambda i: (packages[i]["name"], packages[i]["version"])) if i != root["id"]],
    "dependencies": [{"ref": purl(packages[i]), "dependsOn": [purl(packages[d]) for d in normal_deps(nodes[i])]}
                     for i in sorted(reached, key=lambda i: (packages[i]["name"], packages[i]["version"]))],
}
json.dump(sbom, sys.stdout, indent=1, sort_keys=False)
print()
