#!/usr/bin/env bash
# `make image`: the operator's container image as an OCI tarball, built here without pulling
# anything: the release binary, the shared libraries it links (from this machine, found with
# ldd; the same glibc it was built against), the CA roots, /etc/passwd with the non-root
# user 65532, and no shell. Then checks it: the image config says what the Dockerfile's
# runtime stage says (user, entrypoint, cmd, ports, labels), it has no shell, and the binary
# runs from the image's own files as uid 65532 (chroot). Prints the tarball's path.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

bash "$STACK_DIR/build-node.sh"   # the image tool
VERSION="$(sed -n 's/^version = "\(.*\)"$/\1/p' "$REPO_DIR/Cargo.toml" | head -1)"
IMAGE_REF="${IMAGE_REF:-ghcr.io/imageshare-dev/imageshare:v$VERSION}"
TARGET_DIR="${CARGO_TARGET_DIR:-$REPO_DIR/target}"
OUT_DIR="$TARGET_DIR/image"
OUT="$OUT_DIR/imageshare-v$VERSION.oci.tar"
BINARY="$TARGET_DIR/release/imageshare"
mkdir -p "$OUT_DIR"

(cd "$REPO_DIR" && cargo build --release --locked -q) || die "cargo build --release failed"

# The root filesystem, as imagetool flags.
args=(-file "$BINARY:/imageshare:0755")
# Shared libraries: "name => /path (addr)" and the loader "/lib64/ld-linux-x86-64.so.2 (addr)";
# each is stored under the path the binary asks for, with the content of the real file.
while read -r lib; do
  args+=(-file "$(readlink -f "$lib"):$lib:0755")
done < <(ldd "$BINARY" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}')
ca=/etc/ssl/certs/ca-certificates.crt
[[ -f "$ca" ]] || die "no CA bundle at $ca (Debian: apt-get install ca-certificates)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$tmp/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$tmp/group"
args+=(-file "$ca:$ca:0644" -file "$tmp/passwd:/etc/passwd:0644" -file "$tmp/group:/etc/group:0644"
  -dir /tmp:1777 -dir /home/nonroot:0700)

# The image config, as the Dockerfile's runtime stage (checked below) and its base image
# (distroless sets PATH and SSL_CERT_FILE).
SOURCE_DATE_EPOCH="$(git -C "$REPO_DIR" log -1 --format=%ct 2>/dev/null || echo 0)" \
  "$NODE_BIN_DIR/imagetool" -o "$OUT" -name "$IMAGE_REF" "${args[@]}" \
  -entrypoint '["/imageshare"]' -cmd '["operator"]' -user 65532:65532 -expose 8080/tcp \
  -env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin -env SSL_CERT_FILE="$ca" \
  -label org.opencontainers.image.title=imageshare \
  -label "org.opencontainers.image.description=Declarative OpenStack Glance image sharing for Kubernetes" \
  -label org.opencontainers.image.licenses=Apache-2.0 \
  -label org.opencontainers.image.source=https://github.com/imageshare-dev/imageshare \
  >"$tmp/digest" || die "imagetool failed"

# Check 1: the config against the Dockerfile. Check 2: the files (no shell). The parser
# reads the Dockerfile's last stage: LABEL, USER, EXPOSE, ENTRYPOINT, CMD.
python3 - "$REPO_DIR/Dockerfile" "$OUT" "$tmp/rootfs" <<'PY' || die "image check failed"
import io, json, shlex, sys, tarfile
dockerfile, image, rootfs = sys.argv[1:]
lines, cur = [], ""
for raw in open(dockerfile):
    line = raw.rstrip("\n")
    if line.lstrip().startswith("#") and not cur:
        continue
    if line.endswith("\\"):
        cur += line[:-1] + " "
        continue
    cur += line
    if cur.strip():
        lines.append(cur.strip())
    cur = ""
stage = [l for l in lines[max(i for i, l in enumerate(lines) if l.upper().startswith("FROM ")):]]
want = {"labels": {}, "user": None, "ports": [], "entrypoint": None, "cmd": None}
for l in stage:
    word, _, rest = l.partition(" ")
    word = word.upper()
    if word == "LABEL":
        for kv in shlex.split(rest):
            k, _, v = kv.partition("=")
            want["labels"][k] = v
    elif word == "USER":
        want["user"] = rest.strip()
    elif word == "EXPOSE":
        want["ports"] += [p if "/" in p else p + "/tcp" for p in rest.split()]
    elif word == "ENTRYPOINT":
        want["entrypoint"] = json.loads(rest)
    elif word == "CMD":
        want["cmd"] = json.loads(rest)
with tarfile.open(image) as t:
    blob = lambda d: t.extractfile("blobs/" + d.replace(":", "/")).read()
    index = json.loads(t.extractfile("index.json").read())
    manifest = json.loads(blob(index["manifests"][0]["digest"]))
    config = json.loads(blob(manifest["config"]["digest"]))
    layers = [blob(l["digest"]) for l in manifest["layers"]]
c = config["config"]
got = {"labels": c.get("Labels") or {}, "user": c.get("User"), "ports": sorted(c.get("ExposedPorts") or {}),
       "entrypoint": c.get("Entrypoint"), "cmd": c.get("Cmd")}
want["ports"].sort()
problems = [f"{k}: Dockerfile says {want[k]!r}, image has {got[k]!r}" for k in want if want[k] != got[k]]
if config.get("os") != "linux" or not config.get("architecture"):
    problems.append("image config has no os/architecture")
names = []
for data in layers:
    with tarfile.open(fileobj=io.BytesIO(data)) as layer:
        names += layer.getnames()
        layer.extractall(rootfs, filter="fully_trusted")
for shell in ("bin/sh", "bin/bash", "bin/busybox", "usr/bin/sh"):
    if shell in names:
        problems.append(f"image has a shell: /{shell}")
if problems:
    sys.exit("image check: " + "; ".join(problems))
PY
# Check 3: it runs from its own files only, as its user.
out="$(chroot --userspec=65532:65532 "$tmp/rootfs" /imageshare version 2>&1)" ||
  die "the image's binary does not run from the image's files as uid 65532: $out"
[[ "$out" == "imageshare $VERSION (commit "* ]] || die "unexpected 'imageshare version' in the image: $out"
log "image: $(cut -d' ' -f1 "$tmp/digest") $(cut -d' ' -f2 "$tmp/digest" | cut -c1-19) $(du -h "$OUT" | cut -f1) ($out)"
echo "$OUT"
