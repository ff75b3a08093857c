package main_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// The Dockerfile at the repository root, as far as a test can check it
// without a Docker engine (CI builds and runs the image: .ci/image-check.sh):
// its default build stage is the golang image of go.mod's Go version, the
// user it runs as has a passwd entry, and its version flag sets what
// `txoutbox version` prints.
func TestDockerfile(t *testing.T) {
	t.Parallel()
	root := filepath.Join("..", "..")
	read := func(name string) string {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(root, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	dockerfile, gomod := read("Dockerfile"), read("go.mod")

	goVersion := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindStringSubmatch(gomod)
	goImage := regexp.MustCompile(`(?m)^ARG GO_IMAGE=(\S+)$`).FindStringSubmatch(dockerfile)
	if goVersion == nil || goImage == nil {
		t.Fatalf("go.mod's go line %v, Dockerfile's ARG GO_IMAGE %v: want both", goVersion, goImage)
	}
	if want := "golang:" + goVersion[1]; goImage[1] != want {
		t.Errorf("Dockerfile: ARG GO_IMAGE=%s; go.mod says go %s, so want %s", goImage[1], goVersion[1], want)
	}

	user := regexp.MustCompile(`(?m)^USER (\d+):(\d+)$`).FindStringSubmatch(dockerfile)
	if user == nil || user[1] == "0" {
		t.Fatalf("Dockerfile: want USER uid:gid, numeric and not root; got %v", user)
	}
	passwd := read(filepath.Join("deploy", "image", "passwd"))
	if !regexp.MustCompile(`(?m)^[a-z]+:x:` + user[1] + `:` + user[2] + `:`).MatchString(passwd) {
		t.Errorf("deploy/image/passwd has no entry for uid %s gid %s:\n%s", user[1], user[2], passwd)
	}
	if !strings.Contains(read(filepath.Join("deploy", "image", "group")), ":x:"+user[2]+":") {
		t.Errorf("deploy/image/group has no group %s", user[2])
	}

	flag := regexp.MustCompile(`-X=(main\.\w+)=\$\{VERSION\}`).FindStringSubmatch(dockerfile)
	if flag == nil {
		t.Fatal("Dockerfile: no -X=main.<var>=${VERSION} linker flag")
	}
	// The flag as the Dockerfile gives it: a misnamed variable would be
	// ignored by the linker without a word.
	bin := filepath.Join(t.TempDir(), "txoutbox")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, "go", "build", "-ldflags=-X="+flag[1]+"=v9.8.7-test", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.CommandContext(ctx, bin, "version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "v9.8.7-test") {
		t.Errorf("txoutbox version with -X=%s=v9.8.7-test: %q, %v", flag[1], out, err)
	}
}
