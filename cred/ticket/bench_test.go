package ticket

import (
	"context"
	"testing"
	"time"

	"github.com/plab/plab/cred"
)

// The benchmarks run in one goroutine, so their rates are per core.

func BenchmarkSignTicket(b *testing.B) {
	w := newWorld(b)
	tk := w.ticket()
	for b.Loop() {
		tk.ID = ""
		if _, err := Sign(tk, "plc.test", w.plc); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tickets/s")
}

// BenchmarkEd25519Verify is the floor: the signature check alone.
func BenchmarkEd25519Verify(b *testing.B) {
	w := newWorld(b)
	msg := []byte(w.sign(b, w.ticket()))
	sig := w.plc.Sign(msg)
	pub := w.plc.Public()
	for b.Loop() {
		if !pub.Verify(msg, sig) {
			b.Fatal("bad signature")
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "verifies/s")
}

func BenchmarkVerifyTicket(b *testing.B) {
	w := newWorld(b)
	doc := w.sign(b, w.ticket())
	c := w.checks()
	b.SetBytes(int64(len(doc)))
	for b.Loop() {
		if _, err := Verify(doc, w.trust, c); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "verifies/s")
}

func BenchmarkRedeemTicket(b *testing.B) {
	w := newWorld(b)
	docs := make([]string, 4096)
	for i := range docs {
		docs[i] = w.sign(b, w.ticket())
	}
	once := cred.NewMemoryOnce(func() time.Time { return w.now })
	c := w.checks()
	ctx := context.Background()
	i := 0
	for b.Loop() {
		if i == len(docs) {
			b.StopTimer()
			once = cred.NewMemoryOnce(func() time.Time { return w.now })
			i = 0
			b.StartTimer()
		}
		if _, err := Redeem(ctx, docs[i], w.trust, c, once); err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "redeems/s")
}

func BenchmarkVerifyLease(b *testing.B) {
	w := newWorld(b)
	tk := w.ticket()
	tk.ID = "t"
	doc, _, err := NewLease(&tk, "s", "node1.test", w.now, w.now.Add(time.Hour), w.node)
	if err != nil {
		b.Fatal(err)
	}
	c := Checks{Now: w.now}
	for b.Loop() {
		if _, err := VerifyLease(doc, w.trust, c); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "verifies/s")
}

// BenchmarkVerifyTicketBatch verifies batches of 64 tickets, as a node
// catching up with PLC does.
func BenchmarkVerifyTicketBatch(b *testing.B) {
	w := newWorld(b)
	docs := make([]string, 64)
	for i := range docs {
		docs[i] = w.sign(b, w.ticket())
	}
	c := w.checks()
	for b.Loop() {
		_, errs := VerifyBatch(docs, w.trust, c)
		if errs[0] != nil {
			b.Fatal(errs[0])
		}
	}
	b.ReportMetric(float64(b.N*len(docs))/b.Elapsed().Seconds(), "verifies/s")
}
