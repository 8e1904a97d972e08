// Command imagetool writes an OCI image as a tarball (an OCI image layout, which
// `ctr images import` and `docker load` read) from local files, without a registry and
// without pulling a base image: one layer made of the files given, and the image config
// given by flags. The stack uses it for the pause image and the operator image (make image).
//
//	imagetool -o out.tar -name REF [-file SRC:DST[:MODE]]... [-dir DST]... [-symlink DST:TARGET]...
//	  [-entrypoint JSON] [-cmd JSON] [-user U] [-env K=V]... [-label K=V]... [-expose 8080/tcp]...
//
// Every file is owned by root, with a fixed time (SOURCE_DATE_EPOCH, else 0), so the same
// inputs give the same image digest.
package main

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

type list []string

func (l *list) String() string     { return strings.Join(*l, ",") }
func (l *list) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	var files, dirs, links, envs, labels, ports list
	out := flag.String("o", "", "output tarball (OCI image layout)")
	name := flag.String("name", "", "image reference stored in the tarball, e.g. example.org/app:v1")
	entrypoint := flag.String("entrypoint", "", `entrypoint as a JSON array, e.g. ["/app"]`)
	cmd := flag.String("cmd", "", `default arguments as a JSON array`)
	user := flag.String("user", "", "user (uid[:gid]) the process runs as")
	workdir := flag.String("workdir", "/", "working directory")
	flag.Var(&files, "file", "SRC:DST[:MODE] a file copied into the image (octal mode, default 0755 if executable else 0644)")
	flag.Var(&dirs, "dir", "DST[:MODE] an empty directory")
	flag.Var(&links, "symlink", "DST:TARGET a symbolic link")
	flag.Var(&envs, "env", "K=V an environment variable")
	flag.Var(&labels, "label", "K=V an image label")
	flag.Var(&ports, "expose", "PORT/PROTO an exposed port")
	flag.Parse()
	if *out == "" || *name == "" {
		fail("-o and -name are required")
	}
	epoch := int64(0)
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		var err error
		if epoch, err = strconv.ParseInt(s, 10, 64); err != nil {
			fail("SOURCE_DATE_EPOCH: %v", err)
		}
	}
	when := time.Unix(epoch, 0).UTC()

	layerTar, err := buildLayer(files, dirs, links, when)
	check(err, "building the layer")
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.OCILayer))
	check(err, "layer")

	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.Append(img, mutate.Addendum{Layer: layer, History: v1.History{Created: v1.Time{Time: when}, CreatedBy: "imagetool", Comment: "files"}})
	check(err, "appending the layer")
	cf, err := img.ConfigFile()
	check(err, "config")
	cf = cf.DeepCopy()
	// containerd skips layers of an image whose platform does not match, and refuses a
	// sandbox image with no entrypoint: both are set.
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	cf.Created = v1.Time{Time: when}
	cf.Config.Entrypoint = jsonList(*entrypoint, "-entrypoint")
	cf.Config.Cmd = jsonList(*cmd, "-cmd")
	cf.Config.User = *user
	cf.Config.WorkingDir = *workdir
	cf.Config.Env = envs
	if len(labels) > 0 {
		cf.Config.Labels = map[string]string{}
		for _, kv := range labels {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				fail("-label %q is not K=V", kv)
			}
			cf.Config.Labels[k] = v
		}
	}
	if len(ports) > 0 {
		cf.Config.ExposedPorts = map[string]struct{}{}
		for _, p := range ports {
			cf.Config.ExposedPorts[p] = struct{}{}
		}
	}
	img, err = mutate.ConfigFile(img, cf)
	check(err, "setting the config")

	dir, err := os.MkdirTemp("", "imagetool")
	check(err, "temporary dir")
	defer os.RemoveAll(dir)
	lp, err := layout.Write(dir, empty.Index)
	check(err, "layout")
	check(lp.AppendImage(img, layout.WithAnnotations(map[string]string{
		"io.containerd.image.name":          *name,
		"org.opencontainers.image.ref.name": *name,
	})), "writing the image")
	check(tarDir(dir, *out, when), "writing "+*out)
	digest, err := img.Digest()
	check(err, "digest")
	fmt.Printf("%s %s\n", *name, digest)
}

// buildLayer returns an uncompressed tar of the given files, directories and links, with
// their parent directories, sorted, owned by root, all with the time `when`.
func buildLayer(files, dirs, links list, when time.Time) ([]byte, error) {
	type entry struct {
		hdr  tar.Header
		data []byte
	}
	entries := map[string]entry{}
	addParents := func(p string) {
		for d := path.Dir(p); d != "/" && d != "."; d = path.Dir(d) {
			if _, ok := entries[d]; !ok {
				entries[d] = entry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: strings.TrimPrefix(d, "/") + "/", Mode: 0o755}}
			}
		}
	}
	for _, f := range files {
		parts := strings.Split(f, ":")
		if len(parts) < 2 || len(parts) > 3 || !path.IsAbs(parts[1]) {
			return nil, fmt.Errorf("-file %q is not SRC:/DST[:MODE]", f)
		}
		data, err := os.ReadFile(parts[0])
		if err != nil {
			return nil, err
		}
		st, err := os.Stat(parts[0])
		if err != nil {
			return nil, err
		}
		mode := int64(0o644)
		if st.Mode()&0o111 != 0 {
			mode = 0o755
		}
		if len(parts) == 3 {
			if mode, err = strconv.ParseInt(parts[2], 8, 64); err != nil {
				return nil, fmt.Errorf("-file %q: mode: %v", f, err)
			}
		}
		addParents(parts[1])
		entries[parts[1]] = entry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: strings.TrimPrefix(parts[1], "/"), Mode: mode, Size: int64(len(data))}, data: data}
	}
	for _, d := range dirs {
		p, m, _ := strings.Cut(d, ":")
		mode := int64(0o755)
		if m != "" {
			var err error
			if mode, err = strconv.ParseInt(m, 8, 64); err != nil {
				return nil, fmt.Errorf("-dir %q: mode: %v", d, err)
			}
		}
		addParents(p)
		entries[p] = entry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: strings.TrimPrefix(p, "/") + "/", Mode: mode}}
	}
	for _, l := range links {
		p, target, ok := strings.Cut(l, ":")
		if !ok {
			return nil, fmt.Errorf("-symlink %q is not DST:TARGET", l)
		}
		addParents(p)
		entries[p] = entry{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: strings.TrimPrefix(p, "/"), Linkname: target, Mode: 0o777}}
	}
	names := make([]string, 0, len(entries))
	for n := range entries {
		names = append(names, n)
	}
	sort.Strings(names)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, n := range names {
		e := entries[n]
		e.hdr.ModTime, e.hdr.Format = when, tar.FormatPAX
		if err := tw.WriteHeader(&e.hdr); err != nil {
			return nil, err
		}
		if _, err := tw.Write(e.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// tarDir writes the files under dir (an OCI layout) into a tarball at out.
func tarDir(dir, out string, when time.Time) error {
	f, err := os.Create(out + ".tmp")
	if err != nil {
		return err
	}
	tw := tar.NewWriter(f)
	var paths []string
	var collect func(rel string) error
	collect = func(rel string) error {
		items, err := os.ReadDir(path.Join(dir, rel))
		if err != nil {
			return err
		}
		for _, it := range items {
			p := path.Join(rel, it.Name())
			paths = append(paths, p)
			if it.IsDir() {
				if err := collect(p); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := collect(""); err != nil {
		return err
	}
	sort.Strings(paths)
	for _, p := range paths {
		st, err := os.Stat(path.Join(dir, p))
		if err != nil {
			return err
		}
		hdr := &tar.Header{Name: p, Mode: 0o644, ModTime: when, Format: tar.FormatPAX}
		if st.IsDir() {
			hdr.Typeflag, hdr.Name, hdr.Mode = tar.TypeDir, p+"/", 0o755
			if err := tw.WriteHeader(hdr); err != nil {
				return err
			}
			continue
		}
		data, err := os.ReadFile(path.Join(dir, p))
		if err != nil {
			return err
		}
		hdr.Typeflag, hdr.Size = tar.TypeReg, int64(len(data))
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if _, err := tw.Write(data); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(out+".tmp", out)
}

func jsonList(s, flagName string) []string {
	if s == "" {
		return nil
	}
	var v []string
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		fail("%s %q is not a JSON array of strings: %v", flagName, s, err)
	}
	return v
}

func check(err error, what string) {
	if err != nil {
		fail("%s: %v", what, err)
	}
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "imagetool: "+format+"\n", args...)
	os.Exit(1)
}
