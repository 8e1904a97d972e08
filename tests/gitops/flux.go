package gitops

import (
	"context"
	"fmt"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/ext"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

// FluxExprs are the expressions of one entry of a Flux Kustomization's spec.healthCheckExprs.
type FluxExprs struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	InProgress string `json:"inProgress"`
	Failed     string `json:"failed"`
	Current    string `json:"current"`
}

// celBool parses expr in the environment Flux's kustomize-controller evaluates health check
// expressions in (parsed, not compiled: the object's top-level fields are its variables)
// and evaluates it on object.
func celBool(expr string, object map[string]any) (bool, error) {
	env, err := cel.NewEnv(
		cel.HomogeneousAggregateLiterals(),
		cel.EagerlyValidateDeclarations(true),
		cel.DefaultUTCTimeZone(true),
		cel.CrossTypeNumericComparisons(true),
		cel.OptionalTypes(),
		ext.Strings(),
		ext.Sets(),
		ext.Encoders(),
	)
	if err != nil {
		return false, err
	}
	ast, issues := env.Parse(expr)
	if issues != nil && issues.Err() != nil {
		return false, fmt.Errorf("parsing %q: %w", expr, issues.Err())
	}
	prog, err := env.Program(ast, cel.EvalOptions(cel.OptOptimize), cel.InterruptCheckFrequency(100))
	if err != nil {
		return false, err
	}
	val, _, err := prog.ContextEval(context.Background(), object)
	if err != nil {
		return false, fmt.Errorf("evaluating %q: %w", expr, err)
	}
	b, ok := val.(types.Bool)
	if !ok {
		return false, fmt.Errorf("%q is not a boolean expression", expr)
	}
	return bool(b), nil
}

// FluxHealth is the status Flux gives an object with custom health check expressions
// (RFC-0009): InProgress while status.observedGeneration, when present, differs from
// metadata.generation; otherwise the first of inProgress, failed, current that holds,
// else InProgress. An expression that cannot be evaluated (a field that is not there)
// makes the status Unknown, and Flux waits as for InProgress.
func FluxHealth(e FluxExprs, u *unstructured.Unstructured) status.Status {
	observed, found, err := unstructured.NestedInt64(u.Object, "status", "observedGeneration")
	if err != nil {
		return status.UnknownStatus
	}
	if found && observed != u.GetGeneration() {
		return status.InProgressStatus
	}
	for _, step := range []struct {
		expr   string
		result status.Status
	}{
		{e.InProgress, status.InProgressStatus},
		{e.Failed, status.FailedStatus},
		{e.Current, status.CurrentStatus},
	} {
		if step.expr == "" {
			continue
		}
		ok, err := celBool(step.expr, u.Object)
		if err != nil {
			return status.UnknownStatus
		}
		if ok {
			return step.result
		}
	}
	return status.InProgressStatus
}
