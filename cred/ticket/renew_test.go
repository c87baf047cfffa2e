package ticket

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/plab/plab/cred"
	"github.com/plab/plab/errdefs"
)

// Renew never brings an expired lease back: its sliver is gone.
func TestRenewRefusesExpiredLease(t *testing.T) {
	key, err := cred.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Unix(1_700_000_000, 0)
	tk := &Ticket{ID: NewID(), Issuer: "plc", Principal: key.Fingerprint(), Node: "node1.test", Slice: "s", NotBefore: t0.Unix(), NotAfter: t0.Add(time.Hour).Unix()}
	_, l, err := NewLease(tk, "sl", "node1.test", t0, t0.Add(time.Hour), key)
	if err != nil {
		t.Fatal(err)
	}
	later := t0.Add(30 * 24 * time.Hour) // a month after the lease lapsed
	if _, _, err := Renew(*l, later, later.Add(time.Hour), key); !errors.Is(err, errdefs.ErrExpired) {
		t.Errorf("Renew of a lease expired at %s, at %s = %v, want ErrExpired", time.Unix(l.NotAfter, 0).UTC(), later.UTC(), err)
	}
	if _, _, err := Renew(*l, t0.Add(time.Minute), t0.Add(-time.Minute), key); !errors.Is(err, errdefs.ErrInvalid) {
		t.Errorf("Renew to an expiry in the past = %v, want ErrInvalid", err)
	}
}

type brokenStore struct{}

func (brokenStore) Use(context.Context, string, time.Time) error {
	return fmt.Errorf("disk full: %w", errdefs.ErrUnavailable)
}

// A store that fails is not a ticket redeemed before.
func TestRedeemStoreFailure(t *testing.T) {
	w := newWorld(t)
	_, err := Redeem(context.Background(), w.sign(t, w.ticket()), w.trust, w.checks(), brokenStore{})
	if !errors.Is(err, errdefs.ErrUnavailable) || strings.Contains(err.Error(), "redeemed before") {
		t.Errorf("Redeem with a failing store = %v, want ErrUnavailable, not \"redeemed before\"", err)
	}
}
