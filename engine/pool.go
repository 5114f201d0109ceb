package engine

import (
	"context"
	"sync"
)

// forEach runs work on every item, n items at a time (n must be at least 1 when there are items).
// The first error work returns cancels the context every work call gets and stops handing out items;
// once all calls have returned, forEach returns that error, or ctx's error when ctx ended first.
func forEach[T any](ctx context.Context, items []T, n int, work func(context.Context, T) error) error {
	var (
		mu       sync.Mutex
		wg       sync.WaitGroup
		firstErr error
		next     = make(chan T)
	)
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for it := range next {
				if err := work(cctx, it); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
						cancel()
					}
					mu.Unlock()
				}
			}
		}()
	}
feed:
	for _, it := range items {
		select {
		case next <- it:
		case <-cctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if firstErr == nil {
		firstErr = ctx.Err()
	}
	return firstErr
}
