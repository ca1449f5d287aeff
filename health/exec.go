package health

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultExecOutput is how many bytes of an exec check's output (stdout and stderr together)
// are kept when MaxOutput is 0; the rest is read and thrown away.
const DefaultExecOutput = 4 << 10

// ExecPath is the PATH an exec check's program gets unless Env sets one.
const ExecPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// execWaitDelay bounds how long a finished (or killed) check program's output pipes are
// drained: a descendant that left the process group (setsid) and kept them open cannot hold
// the probe longer than this.
const execWaitDelay = 200 * time.Millisecond

// Exec runs a program as the check (keepalived's MISC_CHECK): exit status 0 is healthy, 1 (or
// any other status without DynamicWeight, or death by a signal) is not. The program runs
// without a shell (Command[0] is the program, the rest its arguments; ask for a shell with
// Command = ["/bin/sh", "-c", "..."]), in a process group of its own that is killed with
// SIGKILL as a whole when the probe's timeout expires, and again when the program exits, so
// neither a hanging script nor the children it left behind outlive the probe. It gets stdin
// from /dev/null, a minimal environment (PATH=ExecPath, plus Env) and keeps at most MaxOutput
// bytes of output for the error text. With User set it runs as that user (and its groups).
//
// A fork bomb is stopped by the group kill (the kernel refuses forks to a process group with
// a pending SIGKILL), but until the timeout it can use up process IDs: run untrusted scripts
// as a User whose process count is limited (RLIMIT_NPROC, e.g. through pam_limits or the
// service manager's LimitNPROC=, which root's own processes ignore).
type Exec struct {
	// Command is the program and its arguments. A program without a slash is looked up in
	// ExecPath (or Env's PATH).
	Command []string
	// Env adds NAME=value pairs to the minimal environment.
	Env []string
	// Dir is the working directory; "" means "/".
	Dir string
	// User, when set, is the user name or numeric uid to run the program as.
	User string
	// DynamicWeight makes exit statuses 2-255 healthy with the backend weight status-2
	// (keepalived's misc_dynamic), reported in Report.Weight.
	DynamicWeight bool
	// MaxOutput bounds the output kept (0: DefaultExecOutput).
	MaxOutput int

	credOnce sync.Once
	cred     *syscall.Credential
	credErr  error
}

// Check runs the program once and maps its exit status.
func (c *Exec) Check(ctx context.Context) (Report, error) {
	if len(c.Command) == 0 || c.Command[0] == "" {
		return Report{}, fmt.Errorf("%s: %w: no command", c, ErrConfig)
	}
	cred, err := c.credential()
	if err != nil {
		return Report{}, err
	}
	out := &capped{max: c.MaxOutput}
	if out.max <= 0 {
		out.max = DefaultExecOutput
	}
	cmd, err := c.command(ctx, cred, out)
	if err != nil {
		return Report{}, err
	}
	if err := cmd.Start(); err != nil {
		return Report{}, fmt.Errorf("%s: start: %w", c, err)
	}
	pid := cmd.Process.Pid
	// Wait for the leader's exit without reaping it: while it is an unreaped zombie its pid
	// (the group's id) cannot be reused, so the group kill below hits only its own children.
	var info unix.Siginfo
	for {
		err = unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	_ = unix.Kill(-pid, unix.SIGKILL)
	werr := cmd.Wait()
	return c.verdict(ctx, cmd, werr, out)
}

// command builds the exec.Cmd of one probe.
func (c *Exec) command(ctx context.Context, cred *syscall.Credential, out *capped) (*exec.Cmd, error) {
	env := c.environ()
	prog := c.Command[0]
	if !strings.Contains(prog, "/") {
		p, err := lookPath(prog, env)
		if err != nil {
			return nil, fmt.Errorf("%s: %w: %w", c, ErrConfig, err)
		}
		prog = p
	}
	cmd := exec.CommandContext(ctx, prog, c.Command[1:]...)
	cmd.Args[0] = c.Command[0]
	cmd.Env = env
	cmd.Dir = c.Dir
	if cmd.Dir == "" {
		cmd.Dir = "/"
	}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL, Credential: cred}
	cmd.Cancel = func() error {
		if err := unix.Kill(-cmd.Process.Pid, unix.SIGKILL); err != nil && !errors.Is(err, unix.ESRCH) {
			return err
		}
		return nil
	}
	cmd.WaitDelay = execWaitDelay
	return cmd, nil
}

// verdict turns the program's end into a Report or an error.
func (c *Exec) verdict(ctx context.Context, cmd *exec.Cmd, werr error, out *capped) (Report, error) {
	st := cmd.ProcessState
	if st == nil {
		return Report{}, fmt.Errorf("%s: %w", c, werr)
	}
	ws, _ := st.Sys().(syscall.WaitStatus)
	if ws.Signaled() {
		if ctx.Err() != nil {
			return Report{}, timeoutErr(ctx, c.String(), fmt.Errorf("program killed: %w", ctx.Err()))
		}
		return Report{}, fmt.Errorf("%s: %w: killed by %v%s", c, ErrExit, ws.Signal(), out.tail())
	}
	switch code := st.ExitCode(); {
	case code == 0:
		return Report{}, nil
	case code >= 2 && c.DynamicWeight:
		return Report{Weight: uint32(code - 2), HasWeight: true}, nil
	default:
		return Report{}, fmt.Errorf("%s: %w: exit status %d%s", c, ErrExit, code, out.tail())
	}
}

// environ is the program's environment: PATH and Env.
func (c *Exec) environ() []string {
	env := make([]string, 0, len(c.Env)+1)
	hasPath := false
	for _, kv := range c.Env {
		hasPath = hasPath || strings.HasPrefix(kv, "PATH=")
	}
	if !hasPath {
		env = append(env, "PATH="+ExecPath)
	}
	return append(env, c.Env...)
}

// lookPath finds prog in env's PATH.
func lookPath(prog string, env []string) (string, error) {
	path := ExecPath
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = v
		}
	}
	for _, dir := range strings.Split(path, ":") {
		if dir == "" {
			continue
		}
		p := dir + "/" + prog
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found in PATH %s: %w", prog, path, exec.ErrNotFound)
}

// credential resolves User once.
func (c *Exec) credential() (*syscall.Credential, error) {
	c.credOnce.Do(func() { c.cred, c.credErr = lookupUser(c.User) })
	if c.credErr != nil {
		return nil, fmt.Errorf("%s: %w: %w", c, ErrConfig, c.credErr)
	}
	return c.cred, nil
}

// CheckUser reports whether name (a user name or uid; "" is xlb's own user) resolves on this
// host as an exec check or script run as that user needs: configuration checks call it so
// that a bad user is refused with the file's line, not found at the first run.
func CheckUser(name string) error {
	_, err := lookupUser(name)
	return err
}

// lookupUser maps a user name or uid to its uid, primary gid and groups; "" means none.
func lookupUser(name string) (*syscall.Credential, error) {
	if name == "" {
		return nil, nil
	}
	u, err := user.Lookup(name)
	if err != nil {
		if _, nerr := strconv.Atoi(name); nerr != nil {
			return nil, fmt.Errorf("user %s: %w", name, err)
		}
		if u, err = user.LookupId(name); err != nil {
			return nil, fmt.Errorf("user %s: %w", name, err)
		}
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("user %s: %w", name, err)
	}
	cred := &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	if gids, err := u.GroupIds(); err == nil {
		for _, g := range gids {
			if n, err := strconv.ParseUint(g, 10, 32); err == nil {
				cred.Groups = append(cred.Groups, uint32(n))
			}
		}
	}
	return cred, nil
}

// String returns "exec CMD ARGS...".
func (c *Exec) String() string { return "exec " + strings.Join(c.Command, " ") }

// capped is an io.Writer that keeps the first max bytes and counts the rest. os/exec copies
// into it from one goroutine per stream, so it locks.
type capped struct {
	mu      sync.Mutex
	max     int
	buf     bytes.Buffer
	dropped int64
}

func (w *capped) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	keep := min(len(p), w.max-w.buf.Len())
	w.buf.Write(p[:keep])
	w.dropped += int64(len(p) - keep)
	return len(p), nil
}

// tail formats the kept output for an error text: its last line, at most 200 bytes.
func (w *capped) tail() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := strings.TrimSpace(w.buf.String())
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	if len(s) > 200 {
		s = s[len(s)-200:]
	}
	if s == "" {
		return ""
	}
	return ": " + strconv.Quote(s)
}
