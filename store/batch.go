package store

import (
	"context"
	"fmt"
	"sync"
)

// Group commit (SQLite). Each commit costs an fsync, and SQLite has one
// writer; so write transactions that arrive while one is running are run
// together, one after the other inside a single transaction, each in its
// own savepoint, and committed once. A function that fails rolls back to
// its savepoint only: the others' writes stand. Each caller learns its own
// result once the common commit is durable; if the commit fails, every
// caller in the batch gets the error and nothing of the batch remains.

// maxBatch bounds how many writes share a commit.
const maxBatch = 64

type batchReq struct {
	ctx  context.Context
	fn   func(*Tx) error
	done chan error
}

type batcher struct {
	mu      sync.Mutex
	queue   []*batchReq
	running bool
}

// updateBatched queues fn for the writer and waits for its result.
func (s *Store) updateBatched(ctx context.Context, fn func(*Tx) error) error {
	r := &batchReq{ctx: ctx, fn: fn, done: make(chan error, 1)}
	s.batch.mu.Lock()
	s.batch.queue = append(s.batch.queue, r)
	if !s.batch.running {
		s.batch.running = true
		go s.writeLoop()
	}
	s.batch.mu.Unlock()
	return <-r.done
}

// writeLoop runs batches until the queue is empty.
func (s *Store) writeLoop() {
	for {
		s.batch.mu.Lock()
		n := min(len(s.batch.queue), maxBatch)
		batch := s.batch.queue[:n:n]
		s.batch.queue = s.batch.queue[n:]
		if n == 0 {
			s.batch.running = false
			s.batch.mu.Unlock()
			return
		}
		s.batch.mu.Unlock()
		s.runBatch(batch)
	}
}

func (s *Store) runBatch(batch []*batchReq) {
	// The batch outlives any one caller's context.
	ctx := context.Background()
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		err = fmt.Errorf("store: begin: %w", s.d.classify(err))
		for _, r := range batch {
			r.done <- err
		}
		return
	}
	t := &Tx{tx: tx, d: s.d, stmts: s.wStmts, fixed: ctx}
	results := make([]error, len(batch))
	for i, r := range batch {
		if err := r.ctx.Err(); err != nil {
			results[i] = err
			continue
		}
		if _, err := tx.ExecContext(ctx, "SAVEPOINT batch"); err != nil {
			results[i] = s.d.classify(err)
			continue
		}
		results[i] = runOne(r.fn, t)
		if results[i] != nil {
			if _, err := tx.ExecContext(ctx, "ROLLBACK TO batch"); err != nil {
				// The transaction is in an unknown state: give up on all.
				_ = tx.Rollback()
				for _, r := range batch {
					r.done <- fmt.Errorf("store: roll back a failed write: %w", err)
				}
				return
			}
		}
		if _, err := tx.ExecContext(ctx, "RELEASE batch"); err != nil {
			_ = tx.Rollback()
			for _, r := range batch {
				r.done <- fmt.Errorf("store: release a savepoint: %w", err)
			}
			return
		}
	}
	cerr := tx.Commit()
	for i, r := range batch {
		if results[i] == nil && cerr != nil {
			results[i] = s.d.classify(cerr)
		}
		r.done <- results[i]
	}
}

// runOne runs fn, turning a panic into an error so one bad write cannot
// take the writer down with the others' writes.
func runOne(fn func(*Tx) error, t *Tx) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("store: write panicked: %v", p)
		}
	}()
	return fn(t)
}
