package cred

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/plab/plab/errdefs"
)

// OnceStore remembers ids that may be used only once (redeemed ticket ids,
// request nonces) until they expire: an id past its expiry is refused by
// the validity check before it reaches the store, so the store may forget
// it then.
//
// Nodes keep their store on disk so a redeemed ticket stays redeemed across
// a restart; MemoryOnce serves a single process.
type OnceStore interface {
	// Use records id until expires. It fails with errdefs.ErrConflict when
	// id was used before. Once Use returns nil the use is durable.
	Use(ctx context.Context, id string, expires time.Time) error
}

// MemoryOnce is an OnceStore in memory, for request nonces and tests.
type MemoryOnce struct {
	now func() time.Time

	mu        sync.Mutex
	ids       map[string]time.Time
	nextSweep time.Time
}

var _ OnceStore = (*MemoryOnce)(nil)

// NewMemoryOnce returns an empty store; now is the clock (time.Now when nil).
func NewMemoryOnce(now func() time.Time) *MemoryOnce {
	if now == nil {
		now = time.Now
	}
	return &MemoryOnce{now: now, ids: make(map[string]time.Time)}
}

// Use records id until expires.
func (m *MemoryOnce) Use(_ context.Context, id string, expires time.Time) error {
	if id == "" {
		return fmt.Errorf("use once: empty id: %w", errdefs.ErrInvalid)
	}
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if now.After(m.nextSweep) {
		for k, exp := range m.ids {
			if now.After(exp) {
				delete(m.ids, k)
			}
		}
		m.nextSweep = now.Add(time.Minute)
	}
	if exp, ok := m.ids[id]; ok && !now.After(exp) {
		return fmt.Errorf("%q was already used: %w", clip(id), errdefs.ErrConflict)
	}
	m.ids[id] = expires
	return nil
}

// Len returns how many ids the store holds.
func (m *MemoryOnce) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.ids)
}
