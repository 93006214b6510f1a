// Package validate checks the Kubernetes manifests of deploy/kubernetes
// offline: every document decodes strictly (no unknown or misspelt field)
// into the Kubernetes API types of k8s.io/api, and the pieces fit together
// (the Job's shards, the Service in front of the server, one image). It is
// a module of its own so that the Kubernetes API stays out of sockbench's
// own dependencies; .ci/run runs `go test` here.
package validate

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// image is the name both manifests use: the repository's Dockerfile,
// built as `docker build -t sockbench:latest .` (deploy/kubernetes/README.md).
const image = "sockbench:latest"

type manifests struct {
	deployments []*appsv1.Deployment
	services    []*corev1.Service
	jobs        []*batchv1.Job
}

// decodeStrict turns one YAML document into obj, refusing unknown fields
// and duplicate keys, as `kubectl apply --validate=strict` would.
func decodeStrict(doc []byte, obj any) error {
	js, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	return dec.Decode(obj)
}

func load(t *testing.T) manifests {
	t.Helper()
	files, err := filepath.Glob("../*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in deploy/kubernetes (%v)", err)
	}
	var m manifests
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(b), -1) {
			where := fmt.Sprintf("%s document %d", filepath.Base(f), i+1)
			var head struct{ APIVersion, Kind string }
			if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			var obj any
			switch head.APIVersion + " " + head.Kind {
			case " ":
				continue // comments only
			case "apps/v1 Deployment":
				d := &appsv1.Deployment{}
				m.deployments, obj = append(m.deployments, d), d
			case "v1 Service":
				s := &corev1.Service{}
				m.services, obj = append(m.services, s), s
			case "batch/v1 Job":
				j := &batchv1.Job{}
				m.jobs, obj = append(m.jobs, j), j
			default:
				t.Fatalf("%s: unexpected %s %s", where, head.APIVersion, head.Kind)
			}
			if err := decodeStrict([]byte(doc), obj); err != nil {
				t.Fatalf("%s: %v", where, err)
			}
		}
	}
	if len(m.deployments) != 1 || len(m.services) != 1 || len(m.jobs) != 1 {
		t.Fatalf("want one Deployment, one Service and one Job, got %d, %d, %d", len(m.deployments), len(m.services), len(m.jobs))
	}
	return m
}

// flag returns the value after name in args ("" when absent).
func flag(args []string, name string) string {
	if i := slices.Index(args, name); i >= 0 && i+1 < len(args) {
		return args[i+1]
	}
	return ""
}

func TestServer(t *testing.T) {
	m := load(t)
	d, svc := m.deployments[0], m.services[0]
	pod := d.Spec.Template
	for k, v := range d.Spec.Selector.MatchLabels {
		if pod.Labels[k] != v {
			t.Errorf("Deployment selector %s=%s does not match its pods", k, v)
		}
	}
	for k, v := range svc.Spec.Selector {
		if pod.Labels[k] != v {
			t.Errorf("Service selector %s=%s does not match the server's pods", k, v)
		}
	}
	c := pod.Spec.Containers[0]
	if c.Image != image || c.Args[0] != "serve" {
		t.Errorf("server container: image %q args %q", c.Image, c.Args)
	}
	_, port, _ := strings.Cut(flag(c.Args, "--addr"), ":")
	if len(c.Ports) != 1 || strconv.Itoa(int(c.Ports[0].ContainerPort)) != port {
		t.Errorf("serve --addr port %s, container ports %+v", port, c.Ports)
	}
	if tp := svc.Spec.Ports[0].TargetPort; tp.StrVal != c.Ports[0].Name && int(tp.IntVal) != int(c.Ports[0].ContainerPort) {
		t.Errorf("Service targets %v, the container listens on %+v", tp.String(), c.Ports[0])
	}
}

func TestLoadJob(t *testing.T) {
	m := load(t)
	j, svc := m.jobs[0], m.services[0]
	s := j.Spec
	if s.CompletionMode == nil || *s.CompletionMode != batchv1.IndexedCompletion {
		t.Fatal("the load Job is not Indexed: pods would not know their shard")
	}
	if s.Completions == nil || s.Parallelism == nil || *s.Completions != *s.Parallelism || *s.Completions < 1 {
		t.Fatal("completions and parallelism must be equal: every generator runs at once")
	}
	n := int(*s.Completions)
	if s.Template.Spec.RestartPolicy != corev1.RestartPolicyNever {
		t.Error("a restarted generator cannot rejoin a window that has passed: restartPolicy must be Never")
	}
	c := s.Template.Spec.Containers[0]
	if c.Image != image || c.Args[0] != "load" {
		t.Errorf("load container: image %q args %q", c.Image, c.Args)
	}
	if got := flag(c.Args, "--shard"); got != fmt.Sprintf("$(SHARD_INDEX)/%d", n) {
		t.Errorf("--shard %q, want $(SHARD_INDEX)/%d (N = completions)", got, n)
	}
	if flag(c.Args, "--start-at") != "$(START_AT)" || flag(c.Args, "--hdr-out") != "/dev/stdout" || flag(c.Args, "--output") != "/dev/null" {
		t.Errorf("load args %q: want --start-at $(START_AT), --hdr-out /dev/stdout (collect.sh reads it) and --output /dev/null", c.Args)
	}
	env := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		env[e.Name] = e
	}
	if e := env["SHARD_INDEX"]; e.ValueFrom == nil || e.ValueFrom.FieldRef == nil ||
		e.ValueFrom.FieldRef.FieldPath != "metadata.annotations['batch.kubernetes.io/job-completion-index']" {
		t.Errorf("SHARD_INDEX must come from the job-completion-index annotation: %+v", e)
	}
	if e := env["START_AT"]; e.ValueFrom == nil || e.ValueFrom.ConfigMapKeyRef == nil {
		t.Errorf("START_AT must come from the sockbench-run ConfigMap: %+v", e)
	}
	want := fmt.Sprintf("tcp://%s:%d", svc.Name, svc.Spec.Ports[0].Port)
	if got := flag(c.Args, "--target"); got != want {
		t.Errorf("load --target %s, the Service is %s", got, want)
	}
	if conns, err := strconv.Atoi(flag(c.Args, "-c")); err != nil || conns < n {
		t.Errorf("-c %q: want at least one connection per shard (%d)", flag(c.Args, "-c"), n)
	}
}

// TestDecodeIsStrict: a misspelt field is refused, so the checks above
// cannot pass on a manifest Kubernetes would reject.
func TestDecodeIsStrict(t *testing.T) {
	doc := "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: x\nspec:\n  completionsMode: Indexed\n"
	if err := decodeStrict([]byte(doc), &batchv1.Job{}); err == nil {
		t.Fatal("a Job with completionsMode (sic) decoded")
	}
}
