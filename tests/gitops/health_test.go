package gitops

import (
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/yaml"
)

// The folder with the health script, its argocd-cm snippet, the fixtures and their
// expected health.
const gitopsDir = "../../deploy/gitops"

type expectations struct {
	Tests []struct {
		InputPath string `json:"inputPath"`
		ArgoCD    Health `json:"argocd"`
		Kstatus   string `json:"kstatus"`
		Flux      string `json:"flux"`
	} `json:"tests"`
}

// fluxExprs reads the ImageShare entry of healthCheckExprs in flux-kustomization.yaml.
func fluxExprs(t *testing.T) FluxExprs {
	t.Helper()
	var k struct {
		Kind string `json:"kind"`
		Spec struct {
			HealthCheckExprs []FluxExprs `json:"healthCheckExprs"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(readFile(t, filepath.Join(gitopsDir, "flux-kustomization.yaml")), &k); err != nil {
		t.Fatal(err)
	}
	for _, e := range k.Spec.HealthCheckExprs {
		if e.APIVersion == "imageshare.dev/v1alpha1" && e.Kind == "ImageShare" {
			return e
		}
	}
	t.Fatal("flux-kustomization.yaml: no healthCheckExprs entry for imageshare.dev/v1alpha1 ImageShare")
	return FluxExprs{}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func healthScript(t *testing.T) string {
	t.Helper()
	return string(readFile(t, filepath.Join(gitopsDir, "argocd-health.lua")))
}

// loadObject reads a YAML manifest as the apiserver would hand it over (integers as int64).
func loadObject(t *testing.T, path string) *unstructured.Unstructured {
	t.Helper()
	data, err := yaml.YAMLToJSON(readFile(t, path))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(data); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return u
}

func loadExpectations(t *testing.T) expectations {
	t.Helper()
	var e expectations
	if err := yaml.UnmarshalStrict(readFile(t, filepath.Join(gitopsDir, "health_test.yaml")), &e); err != nil {
		t.Fatalf("health_test.yaml: %v", err)
	}
	return e
}

func TestFixtures(t *testing.T) {
	script := healthScript(t)
	exprs := fluxExprs(t)
	e := loadExpectations(t)
	if len(e.Tests) == 0 {
		t.Fatal("health_test.yaml lists no tests")
	}
	listed := map[string]bool{}
	for _, tc := range e.Tests {
		listed[filepath.Clean(tc.InputPath)] = true
		t.Run(strings.TrimSuffix(filepath.Base(tc.InputPath), ".yaml"), func(t *testing.T) {
			obj := loadObject(t, filepath.Join(gitopsDir, tc.InputPath))
			got, err := ArgoHealth(script, obj.Object)
			if err != nil {
				t.Fatalf("argo cd health script: %v", err)
			}
			if got != tc.ArgoCD {
				t.Errorf("argo cd health:\n got  %+v\n want %+v", got, tc.ArgoCD)
			}
			res, err := status.Compute(obj)
			if err != nil {
				t.Fatalf("kstatus: %v", err)
			}
			if string(res.Status) != tc.Kstatus {
				t.Errorf("kstatus: got %s (%s), want %s", res.Status, res.Message, tc.Kstatus)
			}
			if got := FluxHealth(exprs, obj); string(got) != tc.Flux {
				t.Errorf("flux with healthCheckExprs: got %s, want %s", got, tc.Flux)
			}
		})
	}
	fixtures, err := filepath.Glob(filepath.Join(gitopsDir, "testdata", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fixtures {
		rel, _ := filepath.Rel(gitopsDir, f)
		if !listed[rel] {
			t.Errorf("%s has no entry in health_test.yaml", rel)
		}
	}
}

// The snippet for argocd-cm carries the same script as argocd-health.lua.
func TestArgoCDConfigMapSnippetMatchesScript(t *testing.T) {
	var cm struct {
		Kind string            `json:"kind"`
		Data map[string]string `json:"data"`
	}
	if err := yaml.Unmarshal(readFile(t, filepath.Join(gitopsDir, "argocd-cm.yaml")), &cm); err != nil {
		t.Fatal(err)
	}
	const key = "resource.customizations.health.imageshare.dev_ImageShare"
	got, ok := cm.Data[key]
	if cm.Kind != "ConfigMap" || !ok {
		t.Fatalf("argocd-cm.yaml: no ConfigMap with data key %s", key)
	}
	if got != healthScript(t) {
		t.Errorf("argocd-cm.yaml differs from argocd-health.lua: copy the script into it again (indented by 4 spaces)")
	}
}

// Argo CD runs custom scripts without the string library: the script must not need it.
func TestScriptRunsWithoutTheStringLibrary(t *testing.T) {
	h, err := ArgoHealth(`return {status = "Healthy", message = type(string)}`, map[string]any{})
	if err != nil {
		t.Fatal(err)
	}
	if h.Message != "nil" {
		t.Fatalf("the test VM opens the string library (type(string) = %s); Argo CD does not", h.Message)
	}
}

// What the operator writes for each Ready reason (src/controller/status.rs): Ready is True
// only for InSync; Reconciling=True joins it for Progressing and TransientError; Stalled=True
// for the reasons that need a person, except AwaitingConsumer; Suspended gets neither.
// Each reason's health is decided here: a reason added to src/api.rs fails this test until
// it is added to the table (and, if needed, to argocd-health.lua).
var reasonHealth = map[string]struct {
	extra   string // the condition besides Ready: "", "Reconciling" or "Stalled"
	argo    string
	kstatus status.Status
	flux    status.Status // with the healthCheckExprs of flux-kustomization.yaml
}{
	"InSync":              {"", "Healthy", status.CurrentStatus, status.CurrentStatus},
	"Progressing":         {"Reconciling", "Progressing", status.InProgressStatus, status.InProgressStatus},
	"TransientError":      {"Reconciling", "Progressing", status.InProgressStatus, status.InProgressStatus},
	"AwaitingConsumer":    {"", "Degraded", status.InProgressStatus, status.FailedStatus},
	"Suspended":           {"", "Suspended", status.InProgressStatus, status.CurrentStatus},
	"ImageNotFound":       {"Stalled", "Degraded", status.FailedStatus, status.FailedStatus},
	"ImageAmbiguous":      {"Stalled", "Degraded", status.FailedStatus, status.FailedStatus},
	"ImageNotShared":      {"Stalled", "Degraded", status.FailedStatus, status.FailedStatus},
	"CredentialsMissing":  {"Stalled", "Degraded", status.FailedStatus, status.FailedStatus},
	"CredentialsInvalid":  {"Stalled", "Degraded", status.FailedStatus, status.FailedStatus},
	"Forbidden":           {"Stalled", "Degraded", status.FailedStatus, status.FailedStatus},
	"MemberQuotaExceeded": {"Stalled", "Degraded", status.FailedStatus, status.FailedStatus},
	"ProjectNotFound":     {"Stalled", "Degraded", status.FailedStatus, status.FailedStatus},
	"Conflict":            {"Stalled", "Degraded", status.FailedStatus, status.FailedStatus},
}

// The Ready reasons as src/api.rs spells them (Reason::as_str).
func readyReasons(t *testing.T) []string {
	t.Helper()
	src := string(readFile(t, "../../src/api.rs"))
	start := strings.Index(src, "pub enum Reason")
	if start < 0 {
		t.Fatal("src/api.rs: no enum Reason")
	}
	re := regexp.MustCompile(`Reason::(\w+) => "(\w+)"`)
	var reasons []string
	for _, m := range re.FindAllStringSubmatch(src[start:], -1) {
		reasons = append(reasons, m[2])
	}
	if len(reasons) == 0 {
		t.Fatal("src/api.rs: no Reason::as_str arms found")
	}
	sort.Strings(reasons)
	return reasons
}

func TestEveryReadyReasonHasADecidedHealth(t *testing.T) {
	script := healthScript(t)
	exprs := fluxExprs(t)
	reasons := readyReasons(t)
	seen := map[string]bool{}
	for _, reason := range reasons {
		seen[reason] = true
		want, ok := reasonHealth[reason]
		if !ok {
			t.Errorf("Ready reason %s (src/api.rs) has no entry in reasonHealth: decide its Argo CD and kstatus health", reason)
			continue
		}
		ready := "False"
		if reason == "InSync" {
			ready = "True"
		}
		conditions := []any{condition("Ready", ready, reason)}
		if want.extra != "" {
			conditions = append(conditions, condition(want.extra, "True", reason))
		}
		obj := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "imageshare.dev/v1alpha1",
			"kind":       "ImageShare",
			"metadata":   map[string]any{"name": "x", "namespace": "y", "generation": int64(2)},
			"spec":       map[string]any{"suspend": reason == "Suspended"},
			"status":     map[string]any{"observedGeneration": int64(2), "conditions": conditions},
		}}
		got, err := ArgoHealth(script, obj.Object)
		if err != nil {
			t.Fatalf("%s: %v", reason, err)
		}
		if got.Status != want.argo {
			t.Errorf("%s: argo cd %s, want %s (%s)", reason, got.Status, want.argo, got.Message)
		}
		res, err := status.Compute(obj)
		if err != nil {
			t.Fatalf("%s: %v", reason, err)
		}
		if res.Status != want.kstatus {
			t.Errorf("%s: kstatus %s, want %s", reason, res.Status, want.kstatus)
		}
		if got := FluxHealth(exprs, obj); got != want.flux {
			t.Errorf("%s: flux with healthCheckExprs %s, want %s", reason, got, want.flux)
		}
	}
	for reason := range reasonHealth {
		if !seen[reason] {
			t.Errorf("reasonHealth lists %s, which src/api.rs no longer has", reason)
		}
	}
}

func condition(kind, status, reason string) map[string]any {
	return map[string]any{
		"type": kind, "status": status, "reason": reason,
		"message": "m", "observedGeneration": int64(2),
		"lastTransitionTime": "2026-01-05T09:00:02Z",
	}
}
