//go:build linux

package emulator_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.mqtt.golang/packets"

	"github.com/iot-rollout/rollout/emulator"
	"github.com/iot-rollout/rollout/hubapi"
)

// loadClientEnv, set in the environment, makes the test binary the load client of
// BenchmarkMQTTTenThousandConnections instead of running tests: the device connections are then
// held by another process, so the benchmark's RSS is the emulator's alone.
const loadClientEnv = "EMULATOR_LOAD_CLIENT"

func TestMain(m *testing.M) {
	if os.Getenv(loadClientEnv) != "" {
		if err := loadClient(os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "load client:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// BenchmarkMQTTTenThousandConnections connects 10,000 devices over MQTT with TLS from a child
// process, each subscribed to methods and desired pushes as the device SDKs are, and reports the
// emulator process's RSS while it holds them and its growth per connection. Run it with
// -benchtime 1x: one iteration is the 10,000 connections.
func BenchmarkMQTTTenThousandConnections(b *testing.B) {
	const n = 10000
	raiseFileLimit(b, n+1000)
	for range b.N {
		b.StopTimer()
		// Started and closed here rather than by emulatortest, whose cleanup would keep each
		// closed emulator's memory until the benchmark ends and count it in the next figure.
		fleet, err := emulator.ParseFleet("fleet.yaml", []byte(fmt.Sprintf("groups:\n  - {name: b, count: %d, idPrefix: b-, behavior: {driver: external}}\n", n)))
		if err != nil {
			b.Fatal(err)
		}
		s, err := emulator.Start(context.Background(), emulator.Options{Fleet: fleet, MQTTAddr: "127.0.0.1:0"})
		if err != nil {
			b.Fatal(err)
		}
		runtime.GC()
		debug.FreeOSMemory()
		before := rss(b)
		b.StartTimer()
		began := time.Now()
		stop := startLoadClient(b, s, n)
		after := rss(b)
		took := time.Since(began)
		b.StopTimer()
		live, _ := s.Connections()
		subscribed := 0
		for _, c := range live {
			if len(c.Subscriptions) == 2 {
				subscribed++
			}
		}
		if len(live) != n || subscribed != n {
			stop()
			s.Close()
			b.Fatalf("%d live connections, %d with both subscriptions; want %d", len(live), subscribed, n)
		}
		b.ReportMetric(float64(after)/(1<<20), "MB-RSS")
		b.ReportMetric(float64(after-before)/n/1024, "KB-RSS/conn")
		b.ReportMetric(float64(n)/took.Seconds(), "conns/s")
		stop()
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

// raiseFileLimit raises the soft limit on open files to at least want (up to the hard limit).
func raiseFileLimit(tb testing.TB, want uint64) {
	tb.Helper()
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		tb.Fatal(err)
	}
	if l.Cur >= want {
		return
	}
	if l.Max < want {
		tb.Fatalf("open files are limited to %d (hard); %d are needed: raise it (ulimit -Hn)", l.Max, want)
	}
	l.Cur = want
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		tb.Fatal(err)
	}
}

// rss is the process's resident set size in bytes, from /proc/self/status.
func rss(tb testing.TB) uint64 {
	tb.Helper()
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		tb.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				tb.Fatal(err)
			}
			return kb * 1024
		}
	}
	tb.Fatal("no VmRSS in /proc/self/status")
	return 0
}

// startLoadClient runs the load client for the n devices of s (b-0000...) and returns once all are
// connected and subscribed; stop ends the client, closing every connection.
func startLoadClient(tb testing.TB, s *emulator.Server, n int) (stop func()) {
	tb.Helper()
	cs, err := hubapi.ParseConnectionString(s.ConnectionString())
	if err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), loadClientEnv+"=1", "LOAD_ADDR="+s.MQTTAddr(), "LOAD_CA="+s.CAFile(),
		"LOAD_HOST="+cs.HostName, "LOAD_COUNT="+strconv.Itoa(n), "LOAD_TOKEN="+cs.SASToken(time.Now().Add(time.Hour)))
	in, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	var stderr bytes.Buffer
	out, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	stop = func() {
		in.Close()
		if err := cmd.Wait(); err != nil {
			tb.Errorf("load client: %v\n%s", err, stderr.String())
		}
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "connected "+strconv.Itoa(n)+"\n" {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		tb.Fatalf("load client: %q %v\n%s", line, err, stderr.String())
	}
	return stop
}

// loadClient is the child process: it connects LOAD_COUNT devices (b-0000...) to LOAD_ADDR with
// the policy token LOAD_TOKEN, subscribes each to methods and desired pushes, writes "connected N"
// and holds the connections until its standard input closes.
func loadClient(stdin io.Reader, stdout io.Writer) error {
	n, err := strconv.Atoi(os.Getenv("LOAD_COUNT"))
	if err != nil {
		return err
	}
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err == nil && l.Cur < l.Max {
		l.Cur = l.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
	}
	pem, err := os.ReadFile(os.Getenv("LOAD_CA"))
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	cfg := &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
	conns := make([]net.Conn, n)
	ids := make(chan int)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range ids {
				id := emulator.GroupDeviceID(&emulator.Group{IDPrefix: "b-", Count: n}, i)
				c, err := loadDevice(cfg, id)
				if err != nil {
					errs <- fmt.Errorf("%s: %w", id, err)
					continue
				}
				conns[i] = c
			}
		}()
	}
	for i := range n {
		ids <- i
	}
	close(ids)
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	fmt.Fprintf(stdout, "connected %d\n", n)
	_, _ = io.Copy(io.Discard, stdin)
	for _, c := range conns {
		c.Close()
	}
	return nil
}

// loadDevice connects as device id, subscribes it as the SDKs do and waits for each answer.
func loadDevice(cfg *tls.Config, id string) (net.Conn, error) {
	c, err := tls.Dial("tcp", os.Getenv("LOAD_ADDR"), cfg)
	if err != nil {
		return nil, err
	}
	cp := packets.NewControlPacket(packets.Connect).(*packets.ConnectPacket)
	cp.ProtocolName, cp.ProtocolVersion, cp.ClientIdentifier = "MQTT", 4, id
	cp.UsernameFlag, cp.Username = true, os.Getenv("LOAD_HOST")+"/"+id+"/?api-version=2021-04-12"
	cp.PasswordFlag, cp.Password = true, []byte(os.Getenv("LOAD_TOKEN"))
	sub := packets.NewControlPacket(packets.Subscribe).(*packets.SubscribePacket)
	sub.MessageID = 1
	sub.Topics, sub.Qoss = []string{"$iothub/methods/POST/#", "$iothub/twin/PATCH/properties/desired/#"}, []byte{0, 0}
	_ = c.SetDeadline(time.Now().Add(60 * time.Second))
	for _, p := range []packets.ControlPacket{cp, sub} {
		if err := p.Write(c); err != nil {
			c.Close()
			return nil, err
		}
		ack, err := packets.ReadPacket(c)
		if err == nil {
			switch a := ack.(type) {
			case *packets.ConnackPacket:
				if a.ReturnCode != 0 {
					err = fmt.Errorf("CONNACK %d", a.ReturnCode)
				}
			case *packets.SubackPacket:
			default:
				err = errors.New("unexpected " + ack.String())
			}
		}
		if err != nil {
			c.Close()
			return nil, err
		}
	}
	_ = c.SetDeadline(time.Time{})
	return c, nil
}
