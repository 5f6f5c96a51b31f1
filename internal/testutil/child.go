package testutil

import (
	"io"
	"os"
	"os/exec"
	"testing"
)

// StartChild runs the test binary again as a child process that runs only
// the test named test, with env (KEY=value) added to the environment: the
// way crash tests get a process they can kill -9. The child's stderr is
// passed through. It returns the started command, which the caller kills
// and waits for, and the child's stdout.
func StartChild(t testing.TB, test string, env ...string) (*exec.Cmd, io.Reader) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+test+"$", "-test.count=1")
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, out
}
