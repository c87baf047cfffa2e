package ticket

import (
	"fmt"
	"strings"

	"github.com/hdevalence/ed25519consensus"
)

// VerifyBatch verifies many tickets at once, as Verify would one by one,
// applying the same checks c to each: a node catching up with PLC after an
// outage gets a whole batch. The signatures are checked together (Ed25519
// batch verification, about twice as fast per ticket for batches of tens);
// when the batch fails, each is checked alone to find the bad ones.
// tickets[i] is nil exactly when errs[i] is not.
//
// The batch check follows ZIP 215, which accepts a few encodings of points
// that the one-by-one check (RFC 8032) refuses; only the holder of the
// signing key can produce them, so a trusted PLC is the only one who could.
func VerifyBatch(docs []string, trust *Trust, c Checks) ([]*Ticket, []error) {
	tickets := make([]*Ticket, len(docs))
	errs := make([]error, len(docs))
	type pending struct {
		i   int
		iss Issuer
		p   *parsed
	}
	var todo []pending
	bv := ed25519consensus.NewPreallocatedBatchVerifier(len(docs))
	for i, doc := range docs {
		p, err := split(doc, TypeTicket)
		if err != nil {
			errs[i] = fmt.Errorf("verify ticket: %w", err)
			continue
		}
		t, iss, err := checkTicket(p, trust, c)
		if err != nil {
			errs[i] = err
			continue
		}
		tickets[i] = t
		todo = append(todo, pending{i, iss, p})
		bv.Add(iss.Key.Ed25519(), []byte(doc[:strings.LastIndexByte(doc, '.')]), p.sig)
	}
	if len(todo) == 0 || bv.Verify() {
		return tickets, errs
	}
	for _, pd := range todo {
		if _, err := verify(docs[pd.i], pd.p, trust); err != nil {
			tickets[pd.i], errs[pd.i] = nil, fmt.Errorf("verify ticket: %w", err)
		}
	}
	return tickets, errs
}
