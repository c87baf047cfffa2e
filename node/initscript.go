package node

import (
	"bytes"
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/plab/plab/sliver"
)

// InitscriptTimeout bounds one run of a slice's initscript.
const InitscriptTimeout = 10 * time.Minute

// startInitscript runs a slice's initscript inside its sliver, in the
// background, as the sliver's root: when the sliver starts and when the
// script changes. Its state shows in the sliver's status and its output's
// tail in the node's log.
func (m *Manager) startInitscript(name, script string) {
	if script == "" {
		return
	}
	m.mu.Lock()
	m.inits[name] = "running"
	m.mu.Unlock()
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), InitscriptTimeout)
		defer cancel()
		go func() {
			select {
			case <-m.closing:
				cancel()
			case <-ctx.Done():
			}
		}()
		out := &tail{max: 4 << 10}
		code, err := m.backend.Exec(ctx, name, sliver.ExecSpec{Args: []string{"/bin/sh", "-c", script}, Stdout: out, Stderr: out})
		state := "exit " + strconv.Itoa(code)
		if err != nil {
			state = "failed: " + err.Error()
		}
		m.log.Info("initscript ran", "sliver", name, "result", state, "output", out.String())
		m.mu.Lock()
		if _, ok := m.inits[name]; ok {
			m.inits[name] = state
		}
		m.mu.Unlock()
	}()
}

// tail keeps the last max bytes written to it.
type tail struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = t.b[len(t.b)-t.max:]
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(bytes.TrimSpace(t.b))
}
