package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/iot-rollout/rollout/emulator"
	"github.com/iot-rollout/rollout/hubapi"
	"github.com/spf13/cobra"
)

// defaultEmulatorListen is where `rollout emulator` listens, and so the host `rollout emulator token`
// signs for, unless told otherwise.
const defaultEmulatorListen = "127.0.0.1:8443"

// defaultMQTTListen is where devices connect over MQTT with TLS, the port the device SDKs dial.
const defaultMQTTListen = "127.0.0.1:8883"

// emulatorOptions is what `rollout emulator` was asked to do.
type emulatorOptions struct {
	opts     emulator.Options
	fleet    string
	hubs     []emulatorHub // --hub NAME=FLEET, in the order given
	duration time.Duration // 0: until interrupted
	// mqttDefault is set when --mqtt-listen was not given: a busy default port then only warns, since
	// the REST side is the emulator's main use.
	mqttDefault bool
}

func newEmulatorCmd(e *env) *cobra.Command {
	var o emulatorOptions
	var faults string
	var plain, verbose bool
	cmd := &cobra.Command{
		Use:   "emulator [flags]",
		Short: "serve a local IoT Hub (REST API, simulated devices, tier quotas); `emulator token` signs a SAS token for it",
		Long: "Serves the IoT Hub service REST API over HTTPS with a certificate it generates, and the device side\n" +
			"over MQTT, with the devices of a fleet file simulated and the quotas of a tier enforced. It prints the\n" +
			"connection string and the CA file on start. The policy key is the documented development key unless\n" +
			"ROLLOUT_EMULATOR_POLICY_KEY (base64) is set.",
		Example: examples(
			"rollout emulator --fleet testdata/fleets/thermostats.yaml --tier S1",
			"rollout emulator --listen 127.0.0.1:443 --host-name localhost   # for the unmodified Node SDK",
			"rollout emulator --fleet fleet.yaml --data hub.json --faults 429=5%,503=1%",
			"rollout emulator --hub eu=eu.yaml --hub us=us.yaml   # eu on 127.0.0.1:8443, us on :8444"),
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			fs := cmd.Flags()
			if err := o.finish(e, faults, plain, verbose, !fs.Changed("mqtt-listen")); err != nil {
				return &usageError{err}
			}
			return exitWith(runEmulator(cmd.Context(), e, o))
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&o.fleet, "fleet", "", "fleet file: generated groups and explicit twins (default: an empty hub)")
	fs.Var(&hubsFlag{&o.hubs}, "hub", "serve hub NAME with this fleet file (repeat for several hubs, each on the next ports after --listen and --mqtt-listen)")
	fs.StringVar(&o.opts.Addr, "listen", defaultEmulatorListen, "address to listen on; 127.0.0.1:443 with HostName=localhost serves the unmodified Node SDK")
	fs.StringVar(&o.opts.Tier, "tier", "unlimited", "quotas to enforce: F1, S1, S2, S3 or unlimited")
	fs.IntVar(&o.opts.Units, "units", 1, "purchased units of the tier")
	fs.DurationVar(&o.opts.QueryLag, "query-lag", 0, "twin queries see twins as they were this long ago")
	fs.StringVar(&faults, "faults", "", "inject faults into a seeded share of requests, e.g. 429=5%,503=1%,drop=1%,slow=10%:2s")
	fs.Int64Var(&o.opts.Seed, "seed", 0, "decides which devices are offline or failing and the fault sequence")
	fs.StringVar(&o.opts.DataFile, "data", "", "keep twins and jobs in this file across restarts")
	fs.StringVar(&o.opts.CertDir, "cert-dir", filepath.Join(".rollout", "emulator"), "where the generated CA (ca.pem) is kept and reused")
	fs.BoolVar(&plain, "plain-http", false, "serve plain HTTP instead of HTTPS")
	fs.StringVar(&o.opts.HostName, "host-name", "", "HostName for the connection string (default: localhost on port 443, else the listen address)")
	fs.StringVar(&o.opts.PolicyName, "policy-name", emulator.DevelopmentPolicyName, "shared access policy name")
	fs.StringVar(&o.opts.MQTTAddr, "mqtt-listen", defaultMQTTListen, "where devices connect over MQTT 3.1.1 with TLS (\"\" or off: no MQTT)")
	fs.DurationVar(&o.duration, "duration", 0, "stop after this long (default: run until interrupted)")
	fs.BoolVar(&verbose, "verbose", false, "log every request (method, path, status, error code, duration) to standard error")
	cmd.AddCommand(newEmulatorTokenCmd(e))
	return cmd
}

// noArgs refuses positional arguments, naming the first.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("unexpected argument %q", args[0])
	}
	return nil
}

// finish checks the parsed flags and completes the emulator's options from them and the environment.
func (o *emulatorOptions) finish(e *env, faults string, plain, verbose, mqttDefault bool) error {
	o.opts.TLS = !plain
	o.mqttDefault = mqttDefault
	if o.opts.MQTTAddr == "off" {
		o.opts.MQTTAddr = ""
	}
	if verbose {
		o.opts.Log = e.stderr
	}
	if plain {
		o.opts.CertDir = ""
	}
	if o.opts.Units < 1 {
		return errors.New("--units must be at least 1")
	}
	if err := o.checkHubs(); err != nil {
		return err
	}
	if o.opts.QueryLag < 0 || o.duration < 0 {
		return errors.New("--query-lag and --duration must not be negative")
	}
	if _, err := hubapi.TierQuotas(o.opts.Tier, o.opts.Units); err != nil {
		return err
	}
	var err error
	if o.opts.Faults, err = emulator.ParseFaults(faults); err != nil {
		return err
	}
	if k := e.getenv("ROLLOUT_EMULATOR_POLICY_KEY"); k != "" {
		o.opts.PolicyKey = k
	}
	return nil
}

// runEmulator serves until interrupted (or --duration), then closes the emulator, which writes the data
// file when --data is set. With --hub it serves each hub on its own ports.
func runEmulator(ctx context.Context, e *env, o emulatorOptions) int {
	specs, err := o.hubSpecs()
	if err != nil {
		fmt.Fprintln(e.stderr, "rollout emulator:", err)
		return exitInvalid
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	var srvs []*emulator.Server
	closeAll := func() (failed bool) {
		for i, srv := range srvs {
			if err := srv.Close(); err != nil {
				fmt.Fprintf(e.stderr, "rollout emulator: %s%v\n", hubPrefix(specs[i].name), err)
				failed = true
			}
		}
		return failed
	}
	for _, sp := range specs {
		srv, err := o.start(ctx, e, sp)
		if err != nil {
			fmt.Fprintf(e.stderr, "rollout emulator: %s%v\n", hubPrefix(sp.name), err)
			closeAll()
			return exitHub
		}
		srvs = append(srvs, srv)
	}
	for i, srv := range srvs {
		announce(e, o, specs[i].name, srv, i == 0)
	}
	var timeout <-chan time.Time
	if o.duration > 0 {
		timeout = time.After(o.duration)
	}
	select {
	case <-ctx.Done():
	case <-timeout:
	}
	if closeAll() {
		return exitHub
	}
	fmt.Fprintln(e.stderr, "rollout emulator: stopped")
	return exitOK
}

// start starts the emulator of one hub. A busy default MQTT port only warns, since the REST side is
// the emulator's main use.
func (o emulatorOptions) start(ctx context.Context, e *env, sp emulatorSpec) (*emulator.Server, error) {
	srv, err := emulator.Start(ctx, sp.opts)
	if err != nil && o.mqttDefault && errors.Is(err, syscall.EADDRINUSE) && sp.opts.MQTTAddr != "" {
		fmt.Fprintf(e.stderr, "rollout emulator: %s%s is in use, so devices cannot connect over MQTT; pass --mqtt-listen HOST:PORT\n",
			hubPrefix(sp.name), sp.opts.MQTTAddr)
		sp.opts.MQTTAddr = ""
		srv, err = emulator.Start(ctx, sp.opts)
	}
	return srv, err
}

// announce says what a started emulator serves: its devices and quotas, its connection string
// (IOTHUB_CONNECTION_STRING, or IOTHUB_NAME_CONNECTION_STRING for hub NAME of --hub), the CA to trust
// (once: every hub has the same CA) and the device side.
func announce(e *env, o emulatorOptions, name string, srv *emulator.Server, first bool) {
	st := srv.Stats()
	q := srv.Quotas()
	limits := "no quotas"
	if !q.Unlimited() {
		limits = fmt.Sprintf("%d concurrent jobs, %g job device ops/s, %g queries/min, pages of %d",
			q.ConcurrentJobs, q.JobDeviceOpsPerSec, q.QueriesPerMinute, q.MaxPageSize)
	}
	fmt.Fprintf(e.stderr, "rollout emulator: %s%s on %s, tier %s (%s)\n", hubPrefix(name), plural(st.Devices, "device"), srv.URL(), q.Tier, limits)
	fmt.Fprintf(e.stdout, "%s=%s\n", hubVar(name, "CONNECTION_STRING"), srv.ConnectionString())
	// Over plain HTTP the CA serves only the MQTT side, and is named with it.
	if ca := srv.CAFile(); ca != "" && o.opts.TLS && first {
		abs, err := filepath.Abs(ca)
		if err == nil {
			ca = abs
		}
		fmt.Fprintf(e.stdout, "SSL_CERT_FILE=%s\n", ca)
		fmt.Fprintf(e.stdout, "NODE_EXTRA_CA_CERTS=%s\n", ca)
	}
	if addr := srv.MQTTAddr(); addr != "" {
		fmt.Fprintf(e.stdout, "%s=%s\n", strings.Replace(hubVar(name, "MQTT_ADDR"), "IOTHUB", "DEVICE", 1), addr)
		ws := strings.Replace(srv.URL(), "http", "ws", 1) + "/$iothub/websocket"
		fmt.Fprintf(e.stderr, "rollout emulator: %sdevices connect over MQTT with TLS at %s (CA %s) or over %s, with the keys GET /devices/{id} returns\n",
			hubPrefix(name), addr, srv.CAFile(), ws)
	}
	fmt.Fprintf(e.stderr, "rollout emulator: %stry %s\n", hubPrefix(name), curlExample(srv, o.opts.PolicyName))
	fmt.Fprintf(e.stderr, "rollout emulator: %sobservability at %s/_emulator/stats; Ctrl-C stops\n", hubPrefix(name), srv.URL())
}

// curlExample is a command line that reads the emulator's registry statistics with a token from
// `rollout emulator token`, so that no token (a credential once the key is not the development one)
// is printed.
func curlExample(srv *emulator.Server, policy string) string {
	host := defaultEmulatorListen
	if cs, err := hubapi.ParseConnectionString(srv.ConnectionString()); err == nil {
		host = cs.HostName
	}
	token := "rollout emulator token --host " + host
	if policy != emulator.DevelopmentPolicyName {
		token += " --policy " + policy
	}
	cacert := ""
	if ca := srv.CAFile(); ca != "" && strings.HasPrefix(srv.URL(), "https://") {
		if abs, err := filepath.Abs(ca); err == nil {
			ca = abs
		}
		cacert = "--cacert '" + ca + "' "
	}
	return fmt.Sprintf("curl %s-H \"Authorization: $(%s)\" '%s/statistics/devices?api-version=%s'", cacert, token, srv.URL(), hubapi.APIVersion)
}

// emulatorTokenOptions is what `rollout emulator token` was asked to sign.
type emulatorTokenOptions struct {
	cs  hubapi.ConnectionString
	ttl time.Duration
}

func newEmulatorTokenCmd(e *env) *cobra.Command {
	var o emulatorTokenOptions
	var host, policy, key string
	cmd := &cobra.Command{
		Use:   "token [flags]",
		Short: "print a service SAS token for the emulator, for an Authorization header",
		Long:  "Prints a service SAS token for the emulator's policy, valid for --ttl from now.",
		Example: examples(
			fmt.Sprintf("curl -H \"Authorization: $(rollout emulator token)\" 'https://%s/statistics/devices?api-version=%s'", defaultEmulatorListen, hubapi.APIVersion),
			"rollout emulator token --host localhost --policy service --ttl 10m"),
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.finish(e, host, policy, key); err != nil {
				return &usageError{err}
			}
			fmt.Fprintln(e.stdout, o.cs.SASToken(time.Now().Add(o.ttl)))
			return nil
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&host, "host", defaultEmulatorListen, "the emulator's host (the connection string's HostName), with its port")
	fs.StringVar(&policy, "policy", emulator.DevelopmentPolicyName, "shared access policy name")
	fs.StringVar(&key, "key", "", "the policy's key, base64 (default: ROLLOUT_EMULATOR_POLICY_KEY, else the public development key)")
	fs.DurationVar(&o.ttl, "ttl", time.Hour, "how long the token is valid")
	return cmd
}

// finish checks the token flags and builds the connection string that signs the token. Its errors
// never hold the key.
func (o *emulatorTokenOptions) finish(e *env, host, policy, key string) error {
	if o.ttl <= 0 {
		return errors.New("--ttl must be positive")
	}
	if key == "" {
		key = e.getenv("ROLLOUT_EMULATOR_POLICY_KEY")
	}
	if key == "" {
		key = emulator.DevelopmentPolicyKey
	}
	if strings.ContainsAny(host, ";") || strings.ContainsAny(policy, ";") || policy == "" {
		return errors.New("--host and --policy must be non-empty and hold no ';'")
	}
	cs, err := hubapi.ParseConnectionString("HostName=" + host + ";SharedAccessKeyName=" + policy + ";SharedAccessKey=" + key)
	if err != nil {
		// The parser's messages name connection-string parts; say which flag they come from.
		msg := strings.TrimPrefix(err.Error(), "connection string: ")
		msg = strings.NewReplacer("HostName", "--host", "SharedAccessKeyName", "--policy", "SharedAccessKey", "--key").Replace(msg)
		return errors.New(msg)
	}
	o.cs = cs
	return nil
}
