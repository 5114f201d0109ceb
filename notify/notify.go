// Package notify posts the events of a rollout that a person acts on (waiting for approval, gate
// failed, budget tripped, halted, rolled back, done) as JSON to a webhook. Delivery is asynchronous,
// retried a bounded number of times, and never fails the rollout. The webhook's URL is a secret (it
// often carries a token): it never appears in an error or a log line.
package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/iot-rollout/rollout/engine"
)

// The events a webhook receives, as Message.Event names them.
const (
	WaitingForApproval = "waitingForApproval"
	GateFailed         = "gateFailed"
	BudgetTripped      = "budgetTripped"
	Halted             = "halted"
	RolledBack         = "rolledBack"
	Done               = "done"
)

// Message is the JSON body of one notification.
type Message struct {
	Event   string    `json:"event"`
	Rollout string    `json:"rollout"`
	Wave    string    `json:"wave,omitempty"`
	Reason  string    `json:"reason,omitempty"`
	Time    time.Time `json:"time"`
	// Text is the notification in one line, the field chat webhooks (Slack, Teams workflows) show.
	Text string `json:"text"`
}

// Options tune delivery; the zero value is the default.
type Options struct {
	Client   *http.Client  // default: a client with a 10 s timeout
	Attempts int           // tries per message, default 4
	Backoff  time.Duration // before the first retry, doubling each time; default 1 s
	// Log receives a line for each message that could not be delivered (never the URL); nil: none.
	Log io.Writer
}

// Notifier delivers messages to one webhook in the background, in order. It is an engine.Observer.
type Notifier struct {
	url   string
	opts  Options
	queue chan Message
	wg    sync.WaitGroup
	ctx   context.Context
	stop  context.CancelFunc
}

// Check says whether raw is a webhook URL: absolute http or https with a host. Its error never
// holds the URL.
func Check(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errors.New("the webhook URL is not an absolute http or https URL (the URL is not shown: it may hold a secret)")
	}
	return nil
}

// New starts a notifier for the webhook at raw (see Check). Close it to deliver what is queued.
func New(raw string, opts Options) (*Notifier, error) {
	if err := Check(raw); err != nil {
		return nil, err
	}
	if opts.Client == nil {
		opts.Client = &http.Client{Timeout: 10 * time.Second}
	}
	if opts.Attempts <= 0 {
		opts.Attempts = 4
	}
	if opts.Backoff <= 0 {
		opts.Backoff = time.Second
	}
	n := &Notifier{url: raw, opts: opts, queue: make(chan Message, 64)}
	n.ctx, n.stop = context.WithCancel(context.Background())
	n.wg.Add(1)
	go n.run()
	return n, nil
}

// Event queues the notification ev calls for, if any. It never blocks the engine: when the queue is
// full the message is dropped and logged.
func (n *Notifier) Event(ev engine.Event) {
	m, ok := MessageOf(ev)
	if !ok {
		return
	}
	select {
	case n.queue <- m:
	default:
		n.logf("notification %s dropped: too many undelivered", m.Event)
	}
}

// Close delivers the queued messages, waiting at most grace for them, and stops.
func (n *Notifier) Close(grace time.Duration) {
	close(n.queue)
	done := make(chan struct{})
	go func() { n.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(grace):
		n.stop()
		<-done
	}
	n.stop()
}

// MessageOf is the notification of ev, and whether ev calls for one.
func MessageOf(ev engine.Event) (Message, bool) {
	m := Message{Rollout: ev.Rollout, Wave: ev.WaveName, Reason: ev.Reason, Time: ev.Time.UTC()}
	switch {
	case ev.Type == engine.EventWaiting && ev.Reason == "approval":
		m.Event, m.Reason = WaitingForApproval, ""
		m.Text = fmt.Sprintf("rollout %s: wave %s waits for approval (rollout approve %s --wave %s)", ev.Rollout, ev.WaveName, ev.Rollout, ev.WaveName)
	case ev.Type == engine.EventGateFailed && strings.HasPrefix(ev.Reason, "budget:"):
		m.Event = BudgetTripped
		m.Text = fmt.Sprintf("rollout %s: error budget tripped at wave %s: %s", ev.Rollout, ev.WaveName, ev.Reason)
	case ev.Type == engine.EventGateFailed:
		m.Event = GateFailed
		m.Text = fmt.Sprintf("rollout %s: wave %s failed its gate: %s", ev.Rollout, ev.WaveName, ev.Reason)
	case ev.Type == engine.EventHalted:
		m.Event = Halted
		m.Text = fmt.Sprintf("rollout %s halted: %s", ev.Rollout, ev.Reason)
	case ev.Type == engine.EventRolledBack:
		m.Event = RolledBack
		m.Text = fmt.Sprintf("rollout %s rolled back %d devices", ev.Rollout, ev.Devices)
	case ev.Type == engine.EventDone:
		m.Event = Done
		m.Text = fmt.Sprintf("rollout %s done", ev.Rollout)
	default:
		return Message{}, false
	}
	return m, true
}

func (n *Notifier) run() {
	defer n.wg.Done()
	for m := range n.queue {
		if err := n.deliver(m); err != nil {
			n.logf("notification %s not delivered: %v", m.Event, err)
		}
	}
}

// deliver posts m, retrying transient failures (connection errors, 429, 5xx) with exponential
// backoff and jitter, honouring Retry-After.
func (n *Notifier) deliver(m Message) error {
	body, err := json.Marshal(m)
	if err != nil {
		return err
	}
	var last error
	wait := n.opts.Backoff
	for attempt := 1; attempt <= n.opts.Attempts; attempt++ {
		var retryAfter time.Duration
		var retry bool
		retry, retryAfter, last = n.post(body)
		if last != nil {
			last = n.hideHost(last)
		}
		if last == nil || !retry || attempt == n.opts.Attempts {
			break
		}
		d := wait/2 + rand.N(wait/2+1)
		if retryAfter > d {
			d = min(retryAfter, 8*n.opts.Backoff)
		}
		select {
		case <-n.ctx.Done():
			return fmt.Errorf("%w (gave up at the end of the run)", last)
		case <-time.After(d):
		}
		wait *= 2
	}
	if last != nil {
		return fmt.Errorf("%w after %d attempts", last, n.opts.Attempts)
	}
	return nil
}

// post sends one attempt and says whether a failure is worth retrying.
func (n *Notifier) post(body []byte) (retry bool, retryAfter time.Duration, err error) {
	req, err := http.NewRequestWithContext(n.ctx, http.MethodPost, n.url, bytes.NewReader(body))
	if err != nil {
		return false, 0, errors.New("cannot build the request")
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "rollout")
	resp, err := n.opts.Client.Do(req)
	if err != nil {
		return true, 0, redact(err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch {
	case resp.StatusCode < 300:
		return false, 0, nil
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		secs, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
		return true, time.Duration(secs) * time.Second, fmt.Errorf("the webhook answered %s", resp.Status)
	}
	return false, 0, fmt.Errorf("the webhook answered %s", resp.Status)
}

// redact is err without the URL that net/http puts in its errors.
func redact(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("posting to the webhook: %v", ue.Err)
	}
	return errors.New("posting to the webhook failed")
}

// hideHost takes the webhook's host out of an error, which dial and DNS errors name: the URL is
// secret as a whole.
func (n *Notifier) hideHost(err error) error {
	u, _ := url.Parse(n.url)
	msg := err.Error()
	for _, h := range []string{u.Host, u.Hostname()} {
		if h != "" {
			msg = strings.ReplaceAll(msg, h, "WEBHOOK-HOST")
		}
	}
	return errors.New(msg)
}

func (n *Notifier) logf(format string, args ...any) {
	if n.opts.Log != nil {
		fmt.Fprintf(n.opts.Log, "rollout: "+format+"\n", args...)
	}
}
