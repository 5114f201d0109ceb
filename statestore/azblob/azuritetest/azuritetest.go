//go:build linux

// Package azuritetest runs Azurite, the Azure Storage emulator, for tests of the blob state backend:
// the npm package pinned in statestore/azblob/testdata/azurite (azurite 3.35.0; `make test` installs
// it with npm ci), one blob service per test binary, on a free loopback port, its data in a temporary
// directory, always with telemetry off, stopped by pid.
//
// When the package is not installed a test skips, unless ROLLOUT_REQUIRE_AZURITE is set (CI sets it),
// in which case it fails: CI never counts a skipped blob test as passing.
package azuritetest

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Account and Key are Azurite's well-known development account.
const (
	Account = "devstoreaccount1"
	Key     = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

// Server is a running Azurite blob service.
type Server struct {
	Addr string // host:port
	Dir  string // its data
	cmd  *exec.Cmd
}

// ConnectionString is the account's connection string on this server.
func (s *Server) ConnectionString() string {
	return fmt.Sprintf("DefaultEndpointsProtocol=http;AccountName=%s;AccountKey=%s;BlobEndpoint=http://%s/%s;", Account, Key, s.Addr, Account)
}

// URL is the path-style URL of container (and prefix) on this server, as --state takes it.
func (s *Server) URL(containerAndPrefix string) string {
	return fmt.Sprintf("http://%s/%s/%s", s.Addr, Account, containerAndPrefix)
}

var (
	shared    *Server
	sharedErr error
	once      sync.Once
)

// Shared returns the test binary's Azurite, starting it on first use. Call Stop from TestMain.
func Shared(tb testing.TB) *Server {
	tb.Helper()
	Require(tb)
	once.Do(func() { shared, sharedErr = Start("", "") })
	if sharedErr != nil {
		tb.Fatal(sharedErr)
	}
	return shared
}

// Require skips tb when Azurite is not installed, or fails it when ROLLOUT_REQUIRE_AZURITE is set.
func Require(tb testing.TB) {
	tb.Helper()
	bin := binary()
	if _, err := os.Stat(bin); err != nil {
		dir := filepath.Dir(filepath.Dir(filepath.Dir(bin)))
		if os.Getenv("ROLLOUT_REQUIRE_AZURITE") != "" {
			tb.Fatalf("Azurite is not installed (%s): run `npm ci` in %s", bin, dir)
		}
		tb.Skipf("Azurite is not installed (run `make test`, which installs it with npm ci, or `npm ci` in %s)", dir)
	}
}

// StartT starts an Azurite of tb's own, stopped when tb ends.
func StartT(tb testing.TB) *Server {
	tb.Helper()
	Require(tb)
	s, err := Start("", tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(s.Stop)
	return s
}

// Stop stops the shared Azurite, if it was started.
func Stop() {
	if shared != nil {
		shared.Stop()
	}
}

// binary is the pinned azurite-blob, found from this file's place in the module.
func binary() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "testdata", "azurite", "node_modules", ".bin", "azurite-blob")
}

// Start starts Azurite on addr (a free loopback port when empty) with its data in dir (a new
// temporary directory when empty), and waits until it answers.
func Start(addr, dir string) (*Server, error) {
	if addr == "" {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		addr = l.Addr().String()
		l.Close()
	}
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "rollout-azurite-"); err != nil {
			return nil, err
		}
	}
	host, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command(binary(), "--blobHost", host, "--blobPort", port, "--location", dir, "--silent",
		"--disableTelemetry", "--skipApiVersionCheck", "--loose")
	// Its own process group, killed whole by Stop; and killed with the test binary if that dies first.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start Azurite: %w", err)
	}
	s := &Server{Addr: addr, Dir: dir, cmd: cmd}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		resp, err := http.Get("http://" + addr + "/" + Account)
		if err == nil {
			resp.Body.Close()
			return s, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.Stop()
	return nil, fmt.Errorf("Azurite did not answer on %s within 30 s", addr)
}

// Shutdown stops Azurite as an operator would (SIGTERM, so it writes its data out) and waits for it;
// Start(s.Addr, s.Dir) brings the same service back.
func (s *Server) Shutdown() {
	if s.cmd.Process != nil {
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = s.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		s.cmd.Process = nil
	}
}

// Stop kills Azurite (its process group, by pid) and waits for it. Its data stays in Dir.
func (s *Server) Stop() {
	if s.cmd.Process != nil {
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		_ = s.cmd.Wait()
	}
}
