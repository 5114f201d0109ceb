package emulator

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/iot-rollout/rollout/hubapi"
)

// cursor is a stored query result. Continuation tokens name a cursor and an offset into it, so paging
// never re-runs the query, and a page can be fetched again with the same token.
type cursor struct {
	id       string
	source   string // the quota of the listing that made it: a token is good for that listing only
	itemType string
	n        int
	render   func(b []byte, from, to int) []byte // appends items [from, to) separated by commas
	lastUsed atomic.Int64                        // unix nanoseconds
}

// renderLive renders items [from, to) as the JSON of view(item), holding mu's read lock: the items
// change as jobs run, so each page shows them as they stand when it is served.
func renderLive[T, V any](mu *sync.RWMutex, items []T, view func(T) V) func(b []byte, from, to int) []byte {
	return func(b []byte, from, to int) []byte {
		mu.RLock()
		defer mu.RUnlock()
		for i := from; i < to; i++ {
			if i > from {
				b = append(b, ',')
			}
			jb, _ := json.Marshal(view(items[i]))
			b = append(b, jb...)
		}
		return b
	}
}

// Cursor limits: idle cursors expire, and the oldest are dropped past maxCursors.
const (
	cursorIdle     = 10 * time.Minute
	maxCursors     = 1000
	maxCursorItems = 20_000_000 // about 160 MB of stored results
)

type cursorStore struct {
	mu    sync.Mutex
	byID  map[string]*cursor
	order []string
	items int // stored items across cursors
}

func newCursorStore() *cursorStore { return &cursorStore{byID: map[string]*cursor{}} }

func (cs *cursorStore) add(c *cursor) {
	var b [12]byte
	_, _ = rand.Read(b[:])
	c.id = hex.EncodeToString(b[:])
	c.lastUsed.Store(time.Now().UnixNano())
	cs.mu.Lock()
	defer cs.mu.Unlock()
	cs.byID[c.id] = c
	cs.order = append(cs.order, c.id)
	cs.items += c.n
	for len(cs.order) > 1 && (len(cs.byID) > maxCursors || cs.items > maxCursorItems) {
		if old := cs.byID[cs.order[0]]; old != nil {
			cs.items -= old.n
			delete(cs.byID, cs.order[0])
		}
		cs.order = cs.order[1:]
	}
}

func (cs *cursorStore) get(id string) *cursor {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	c := cs.byID[id]
	if c != nil {
		c.lastUsed.Store(time.Now().UnixNano())
	}
	return c
}

func (cs *cursorStore) expireLoop(done <-chan struct{}) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
		}
		cut := time.Now().Add(-cursorIdle).UnixNano()
		cs.mu.Lock()
		keep := cs.order[:0]
		for _, id := range cs.order {
			c := cs.byID[id]
			if c == nil {
				continue
			}
			if c.lastUsed.Load() < cut {
				cs.items -= c.n
				delete(cs.byID, id)
				continue
			}
			keep = append(keep, id)
		}
		cs.order = keep
		cs.mu.Unlock()
	}
}

// serveFirstPage stores c when it has more than one page and answers its first page.
func (s *Server) serveFirstPage(w http.ResponseWriter, c *cursor, pageSize int) error {
	if c.n > pageSize {
		s.cursors.add(c)
	}
	return s.writePage(w, c, 0, pageSize)
}

// servePage answers the page a continuation token names.
func (s *Server) servePage(w http.ResponseWriter, token, source string, pageSize int) error {
	id, off, ok := strings.Cut(token, ".")
	from, err := strconv.Atoi(off)
	c := s.cursors.get(id)
	if !ok || err != nil || c == nil || c.source != source || from < 0 || from > c.n {
		return hubErr(hubapi.CodeArgumentInvalid, "The continuation token is invalid or has expired; run the query again")
	}
	return s.writePage(w, c, from, pageSize)
}

func (s *Server) writePage(w http.ResponseWriter, c *cursor, from, pageSize int) error {
	to := min(from+pageSize, c.n)
	b := make([]byte, 0, 1024*(to-from)+2)
	b = append(b, '[')
	b = c.render(b, from, to)
	b = append(b, ']')
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set(hubapi.HeaderItemType, c.itemType)
	if to < c.n {
		// The header is absent on the last page: the Node SDK loops forever on an empty one.
		h.Set(hubapi.HeaderContinuation, c.id+"."+strconv.Itoa(to))
	}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
	return nil
}

// servePaged serves a paged listing of the one charged to quota: a continuation token is good for the
// listing that made it only. A request with a token gets the next page of the stored cursor it names;
// any other runs first, which validates the request and
// returns the whole result, and gets its first page.
func (s *Server) servePaged(w http.ResponseWriter, r *http.Request, quota string, first func() (*cursor, error)) error {
	pageSize, err := s.pageSize(r)
	if err != nil {
		return err
	}
	if tok := r.Header.Get(hubapi.HeaderContinuation); tok != "" {
		return s.servePage(w, tok, quota, pageSize)
	}
	c, err := first()
	if err != nil {
		return err
	}
	c.source = quota
	return s.serveFirstPage(w, c, pageSize)
}

// pageSize reads x-ms-max-item-count, capped at the tier's page size.
func (s *Server) pageSize(r *http.Request) (int, error) {
	n := s.quotas.MaxPageSize
	if h := r.Header.Get(hubapi.HeaderMaxItemCount); h != "" {
		v, err := strconv.Atoi(strings.TrimSpace(h))
		if err != nil || v < 1 {
			return 0, hubErr(hubapi.CodeArgumentInvalid, "%s must be a positive number", hubapi.HeaderMaxItemCount)
		}
		n = min(v, n)
	}
	return n, nil
}
