package ticket

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/google/go-cmp/cmp"

	"github.com/plab/plab/cred"
	"github.com/plab/plab/errdefs"
)

// world is a PLC, a node, a user and a trust set holding PLC and the node.
type world struct {
	plc, node, stranger *cred.PrivateKey
	user, other         cred.Fingerprint
	trust               *Trust
	now                 time.Time
}

func newWorld(t testing.TB) *world {
	t.Helper()
	w := &world{now: time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)}
	var err error
	for _, k := range []**cred.PrivateKey{&w.plc, &w.node, &w.stranger} {
		if *k, err = cred.GenerateKey(); err != nil {
			t.Fatal(err)
		}
	}
	u, _ := cred.GenerateKey()
	o, _ := cred.GenerateKey()
	w.user, w.other = u.Fingerprint(), o.Fingerprint()
	w.trust, err = NewTrust(
		Issuer{Role: RolePLC, Name: "plc.test", Key: w.plc.Public()},
		Issuer{Role: RoleNode, Name: "node1.test", Key: w.node.Public()},
	)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func (w *world) ticket() Ticket {
	return Ticket{
		Principal: w.user,
		Node:      "node1.test",
		Slice:     "princeton_codeen",
		Resources: Resources{CPUShares: 2, MemoryBytes: 512 << 20, Ports: []string{"tcp/8080"}},
		IssuedAt:  w.now.Unix(),
		NotBefore: w.now.Unix(),
		NotAfter:  w.now.Add(time.Hour).Unix(),
	}
}

func (w *world) sign(t testing.TB, tk Ticket) string {
	t.Helper()
	doc, err := Sign(tk, "plc.test", w.plc)
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

func (w *world) checks() Checks {
	return Checks{Now: w.now.Add(time.Minute), Skew: 30 * time.Second, Node: "node1.test", Principal: w.user}
}

// rawJWS signs any header and payload bytes, as another JOSE tool would.
func rawJWS(key *cred.PrivateKey, header, payload string) string {
	in := b64(header) + "." + b64(payload)
	return in + "." + base64.RawURLEncoding.EncodeToString(key.Sign([]byte(in)))
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func headerFor(key *cred.PrivateKey, typ string) string {
	return fmt.Sprintf(`{"alg":"EdDSA","kid":%q,"typ":%q}`, key.Fingerprint(), typ)
}

func TestTicketRoundTrip(t *testing.T) {
	w := newWorld(t)
	in := w.ticket()
	doc := w.sign(t, in)
	got, err := Verify(doc, w.trust, w.checks())
	if err != nil {
		t.Fatalf("Verify = %v", err)
	}
	in.Issuer, in.ID = "plc.test", got.ID
	if diff := cmp.Diff(&in, got); diff != "" {
		t.Errorf("Verify returned other terms (-signed +verified):\n%s", diff)
	}
	if len(got.ID) != 22 {
		t.Errorf("ticket id %q, want 22 characters of base64url (128 bits)", got.ID)
	}
	// A document built by hand to RFC 7515 verifies too: the format is
	// standard, not go-jose's.
	payload, _ := json.Marshal(in)
	hand := rawJWS(w.plc, headerFor(w.plc, TypeTicket), string(payload))
	if _, err := Verify(hand, w.trust, w.checks()); err != nil {
		t.Errorf("Verify(hand-made RFC 7515 JWS) = %v", err)
	}
	// And go-jose, a second implementation, verifies what plab signs.
	obj, err := jose.ParseSignedCompact(doc, []jose.SignatureAlgorithm{jose.EdDSA})
	if err != nil {
		t.Fatalf("go-jose cannot parse a plab ticket: %v", err)
	}
	if p, err := obj.Verify(w.plc.Public().Ed25519()); err != nil || !json.Valid(p) {
		t.Errorf("go-jose Verify(plab ticket) = %q, %v", p, err)
	}
	un, kid, err := UnverifiedTicket(doc)
	if err != nil || kid != w.plc.Fingerprint() || un.ID != got.ID {
		t.Errorf("UnverifiedTicket = %v, %s, %v", un, kid, err)
	}
}

// TestVerifyFailures is the table of every way a ticket must be refused.
func TestVerifyFailures(t *testing.T) {
	w := newWorld(t)
	good := w.sign(t, w.ticket())
	parts := strings.Split(good, ".")
	goodPayload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	plcHeader := headerFor(w.plc, TypeTicket)
	payload := func(edit func(m map[string]any)) string {
		var m map[string]any
		_ = json.Unmarshal(goodPayload, &m)
		edit(m)
		b, _ := json.Marshal(m)
		return string(b)
	}
	flip := func(s string, i int) string {
		b := []byte(s)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		return string(b)
	}
	hs256 := func() string {
		in := b64(`{"alg":"HS256","kid":"`+string(w.plc.Fingerprint())+`","typ":"`+TypeTicket+`"}`) + "." + parts[1]
		m := hmac.New(sha256.New, w.plc.Public().Ed25519())
		m.Write([]byte(in))
		return in + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
	}()
	withChecks := func(edit func(c *Checks)) Checks {
		c := w.checks()
		edit(&c)
		return c
	}
	leaseDoc, _, err := NewLease(&Ticket{ID: "t1", Principal: w.user, Slice: "princeton_codeen"}, "princeton_codeen", "node1.test", w.now, w.now.Add(time.Hour), w.node)
	if err != nil {
		t.Fatal(err)
	}
	nodeSigned, err := Sign(w.ticket(), "node1.test", w.node)
	if err != nil {
		t.Fatal(err)
	}
	strangerSigned, err := Sign(w.ticket(), "plc.test", w.stranger)
	if err != nil {
		t.Fatal(err)
	}

	table := []struct {
		name   string
		doc    string
		checks Checks
		want   error
	}{
		{"bad signature", parts[0] + "." + parts[1] + "." + flip(parts[2], 5), w.checks(), errdefs.ErrDenied},
		{"signature of another ticket", parts[0] + "." + parts[1] + "." + strings.Split(w.sign(t, w.ticket()), ".")[2], w.checks(), errdefs.ErrDenied},
		{"untrusted signer", strangerSigned, w.checks(), errdefs.ErrDenied},
		{"signed by a node", nodeSigned, w.checks(), errdefs.ErrDenied},
		{"issuer claim not the signer", rawJWS(w.plc, plcHeader, payload(func(m map[string]any) { m["iss"] = "plc.evil" })), w.checks(), errdefs.ErrDenied},
		{"expired", good, withChecks(func(c *Checks) { c.Now = w.now.Add(2 * time.Hour) }), errdefs.ErrExpired},
		{"expired beyond skew", good, withChecks(func(c *Checks) { c.Now = w.now.Add(time.Hour + 31*time.Second) }), errdefs.ErrExpired},
		{"not yet valid", good, withChecks(func(c *Checks) { c.Now = w.now.Add(-time.Hour) }), errdefs.ErrExpired},
		{"not yet valid beyond skew", good, withChecks(func(c *Checks) { c.Now = w.now.Add(-31 * time.Second) }), errdefs.ErrExpired},
		{"no clock", good, withChecks(func(c *Checks) { c.Now = time.Time{} }), errdefs.ErrInvalid},
		{"wrong node", good, withChecks(func(c *Checks) { c.Node = "node2.test" }), errdefs.ErrDenied},
		{"wrong principal", good, withChecks(func(c *Checks) { c.Principal = w.other }), errdefs.ErrDenied},
		{"alg none", b64(`{"alg":"none","kid":"`+string(w.plc.Fingerprint())+`","typ":"`+TypeTicket+`"}`) + "." + parts[1] + ".", w.checks(), errdefs.ErrInvalid},
		{"alg none with signature", b64(`{"alg":"none","kid":"`+string(w.plc.Fingerprint())+`","typ":"`+TypeTicket+`"}`) + "." + parts[1] + "." + parts[2], w.checks(), errdefs.ErrInvalid},
		{"alg HS256 keyed with the public key", hs256, w.checks(), errdefs.ErrInvalid},
		{"alg ES256", rawJWS(w.plc, `{"alg":"ES256","kid":"`+string(w.plc.Fingerprint())+`","typ":"`+TypeTicket+`"}`, string(goodPayload)), w.checks(), errdefs.ErrInvalid},
		{"alg lowercase", rawJWS(w.plc, `{"alg":"eddsa","kid":"`+string(w.plc.Fingerprint())+`","typ":"`+TypeTicket+`"}`, string(goodPayload)), w.checks(), errdefs.ErrInvalid},
		{"lease passed as a ticket", leaseDoc, w.checks(), errdefs.ErrInvalid},
		{"typ JWT", rawJWS(w.plc, headerFor(w.plc, "JWT"), string(goodPayload)), w.checks(), errdefs.ErrInvalid},
		{"embedded jwk", rawJWS(w.plc, `{"alg":"EdDSA","kid":"`+string(w.plc.Fingerprint())+`","typ":"`+TypeTicket+`","jwk":{"kty":"OKP"}}`, string(goodPayload)), w.checks(), errdefs.ErrInvalid},
		{"crit header", rawJWS(w.plc, `{"alg":"EdDSA","kid":"`+string(w.plc.Fingerprint())+`","typ":"`+TypeTicket+`","crit":["exp"]}`, string(goodPayload)), w.checks(), errdefs.ErrInvalid},
		{"duplicate header field", rawJWS(w.plc, `{"alg":"none","alg":"EdDSA","kid":"`+string(w.plc.Fingerprint())+`","typ":"`+TypeTicket+`"}`, string(goodPayload)), w.checks(), errdefs.ErrInvalid},
		{"kid not a fingerprint", rawJWS(w.plc, `{"alg":"EdDSA","kid":"plc","typ":"`+TypeTicket+`"}`, string(goodPayload)), w.checks(), errdefs.ErrInvalid},
		{"duplicate payload field", rawJWS(w.plc, plcHeader, strings.Replace(string(goodPayload), `"aud":"node1.test"`, `"aud":"node1.test","aud":"node2.test"`, 1)), w.checks(), errdefs.ErrInvalid},
		{"duplicate nested field", rawJWS(w.plc, plcHeader, strings.Replace(string(goodPayload), `"cpu_shares":2`, `"cpu_shares":2,"cpu_shares":100`, 1)), w.checks(), errdefs.ErrInvalid},
		{"case-folded duplicate", rawJWS(w.plc, plcHeader, strings.Replace(string(goodPayload), `"aud":"node1.test"`, `"aud":"node1.test","AUD":"node2.test"`, 1)), w.checks(), errdefs.ErrInvalid},
		{"unicode-folded field", rawJWS(w.plc, plcHeader, strings.Replace(string(goodPayload), `"slice":`, `"ſlice":`, 1)), w.checks(), errdefs.ErrInvalid},
		{"unknown field", rawJWS(w.plc, plcHeader, payload(func(m map[string]any) { m["admin"] = true })), w.checks(), errdefs.ErrInvalid},
		{"data after the claims", rawJWS(w.plc, plcHeader, string(goodPayload)+`{}`), w.checks(), errdefs.ErrInvalid},
		{"claims not an object", rawJWS(w.plc, plcHeader, `[1,2]`), w.checks(), errdefs.ErrInvalid},
		{"invalid UTF-8", rawJWS(w.plc, plcHeader, strings.Replace(string(goodPayload), "princeton", "prince\xfftn", 1)), w.checks(), errdefs.ErrInvalid},
		{"fractional time", rawJWS(w.plc, plcHeader, payload(func(m map[string]any) { m["exp"] = float64(w.now.Unix()) + 0.5 })), w.checks(), errdefs.ErrInvalid},
		{"missing slice", rawJWS(w.plc, plcHeader, payload(func(m map[string]any) { delete(m, "slice") })), w.checks(), errdefs.ErrInvalid},
		{"principal not a fingerprint", rawJWS(w.plc, plcHeader, payload(func(m map[string]any) { m["sub"] = "alice" })), w.checks(), errdefs.ErrInvalid},
		{"negative memory", rawJWS(w.plc, plcHeader, payload(func(m map[string]any) { m["res"].(map[string]any)["memory_bytes"] = -1 })), w.checks(), errdefs.ErrInvalid},
		{"truncated to two parts", parts[0] + "." + parts[1], w.checks(), errdefs.ErrInvalid},
		{"truncated signature", good[:len(good)-4], w.checks(), errdefs.ErrInvalid},
		{"truncated payload", parts[0] + "." + parts[1][:len(parts[1])-8] + "." + parts[2], w.checks(), errdefs.ErrInvalid},
		{"padded", good + "==", w.checks(), errdefs.ErrInvalid},
		{"padded payload", parts[0] + "." + parts[1] + "=." + parts[2], w.checks(), errdefs.ErrInvalid},
		{"trailing newline", good + "\n", w.checks(), errdefs.ErrInvalid},
		{"leading space", " " + good, w.checks(), errdefs.ErrInvalid},
		{"fourth part", good + ".AAAA", w.checks(), errdefs.ErrInvalid},
		{"standard base64 alphabet", parts[0] + "." + parts[1] + ".+/" + parts[2][2:], w.checks(), errdefs.ErrInvalid},
		{"empty", "", w.checks(), errdefs.ErrInvalid},
		{"huge", strings.Repeat("A", MaxDocumentBytes+1), w.checks(), errdefs.ErrInvalid},
	}
	for _, tc := range table {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Verify(tc.doc, w.trust, tc.checks)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Verify = %v, %v; want %v", got, err, tc.want)
			}
			if got != nil {
				t.Errorf("Verify returned a ticket with its error")
			}
			assertNoSecrets(t, err.Error(), tc.doc)
		})
	}

	// VerifyBatch agrees with Verify on every document of the table that
	// uses the default checks, mixed with good tickets.
	docs := []string{good}
	for _, tc := range table {
		if cmp.Equal(tc.checks, w.checks()) {
			docs = append(docs, tc.doc, w.sign(t, w.ticket()))
		}
	}
	tickets, errs := VerifyBatch(docs, w.trust, w.checks())
	for i, doc := range docs {
		want, werr := Verify(doc, w.trust, w.checks())
		if errdefs.Kind(errs[i]) != errdefs.Kind(werr) || !cmp.Equal(tickets[i], want) {
			t.Errorf("VerifyBatch[%d] = %v, %v; Verify = %v, %v", i, tickets[i], errs[i], want, werr)
		}
	}
}

func TestVerifyBatchAllGood(t *testing.T) {
	w := newWorld(t)
	var docs []string
	for range 50 {
		docs = append(docs, w.sign(t, w.ticket()))
	}
	tickets, errs := VerifyBatch(docs, w.trust, w.checks())
	for i := range docs {
		if errs[i] != nil || tickets[i] == nil {
			t.Errorf("VerifyBatch[%d] = %v, %v", i, tickets[i], errs[i])
		}
	}
	if tk, errs := VerifyBatch(nil, w.trust, w.checks()); len(tk) != 0 || len(errs) != 0 {
		t.Errorf("VerifyBatch(nil) = %v, %v", tk, errs)
	}
}

// TestEachFieldTampered changes every claim of a signed ticket, one at a
// time, without re-signing: each change breaks the signature.
func TestEachFieldTampered(t *testing.T) {
	w := newWorld(t)
	good := w.sign(t, w.ticket())
	parts := strings.Split(good, ".")
	raw, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	if len(m) != 9 {
		t.Fatalf("ticket has %d claims, want 9; add the new one here", len(m))
	}
	tampered := map[string]string{
		"jti": `"` + NewID() + `"`, "iss": `"plc.other"`, "sub": `"` + string(w.other) + `"`,
		"aud": `"node2.test"`, "slice": `"princeton_other"`,
		"res": `{"cpu_shares":100,"memory_bytes":536870912,"ports":["tcp/8080"]}`,
		"iat": "1", "nbf": fmt.Sprint(w.now.Unix() - 1), "exp": fmt.Sprint(w.now.Add(100 * time.Hour).Unix()),
	}
	for field := range m {
		t.Run(field, func(t *testing.T) {
			v, ok := tampered[field]
			if !ok {
				t.Fatalf("no tampered value for %s", field)
			}
			edit := map[string]json.RawMessage{}
			for k, x := range m {
				edit[k] = x
			}
			edit[field] = json.RawMessage(v)
			b, _ := json.Marshal(edit)
			doc := parts[0] + "." + base64.RawURLEncoding.EncodeToString(b) + "." + parts[2]
			c := w.checks()
			c.Principal, c.Node = "", ""
			if _, err := Verify(doc, w.trust, c); !errors.Is(err, errdefs.ErrDenied) || !strings.Contains(err.Error(), "bad signature") {
				t.Errorf("Verify(ticket with %s changed) = %v, want a bad signature", field, err)
			}
		})
	}
	// The header too: pointing kid at another trusted key breaks it.
	h := b64(headerFor(w.node, TypeTicket))
	if _, err := Verify(h+"."+parts[1]+"."+parts[2], w.trust, w.checks()); !errors.Is(err, errdefs.ErrDenied) {
		t.Errorf("Verify(kid switched to the node's key) = %v, want ErrDenied", err)
	}
}

func TestSkewTolerance(t *testing.T) {
	w := newWorld(t)
	doc := w.sign(t, w.ticket())
	for _, tc := range []struct {
		now  time.Time
		skew time.Duration
		ok   bool
	}{
		{w.now.Add(-29 * time.Second), 30 * time.Second, true},
		{w.now.Add(-31 * time.Second), 30 * time.Second, false},
		{w.now.Add(time.Hour + 29*time.Second), 30 * time.Second, true},
		{w.now.Add(time.Hour), 0, false},
		{w.now.Add(time.Hour - time.Second), 0, true},
		{w.now.Add(-time.Second), 0, false},
		{w.now.Add(-5 * time.Minute), 10 * time.Minute, true},
	} {
		c := w.checks()
		c.Now, c.Skew = tc.now, tc.skew
		_, err := Verify(doc, w.trust, c)
		if (err == nil) != tc.ok {
			t.Errorf("Verify at %s with skew %s = %v, want ok=%v", tc.now.Sub(w.now), tc.skew, err, tc.ok)
		}
	}
}

func TestRedeemOnce(t *testing.T) {
	w := newWorld(t)
	doc := w.sign(t, w.ticket())
	once := cred.NewMemoryOnce(func() time.Time { return w.now })
	ctx := context.Background()
	if _, err := Redeem(ctx, doc, w.trust, w.checks(), once); err != nil {
		t.Fatalf("first Redeem = %v", err)
	}
	if _, err := Redeem(ctx, doc, w.trust, w.checks(), once); !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("second Redeem = %v, want ErrConflict (reused id)", err)
	}
	// Same id, signed anew: still the same ticket.
	tk := w.ticket()
	first, _, _ := UnverifiedTicket(doc)
	tk.ID = first.ID
	if _, err := Redeem(ctx, w.sign(t, tk), w.trust, w.checks(), once); !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("Redeem of a re-signed ticket with a used id = %v, want ErrConflict", err)
	}
	// A refused ticket is not recorded.
	other := w.sign(t, w.ticket())
	c := w.checks()
	c.Principal = w.other
	if _, err := Redeem(ctx, other, w.trust, c, once); !errors.Is(err, errdefs.ErrDenied) {
		t.Errorf("Redeem by the wrong principal = %v, want ErrDenied", err)
	}
	if _, err := Redeem(ctx, other, w.trust, w.checks(), once); err != nil {
		t.Errorf("Redeem by the right principal after a refused attempt = %v", err)
	}
	if _, err := Redeem(ctx, other, w.trust, Checks{Now: w.now}, once); !errors.Is(err, errdefs.ErrInvalid) {
		t.Errorf("Redeem without node and principal = %v, want ErrInvalid", err)
	}
}

func TestLease(t *testing.T) {
	w := newWorld(t)
	tk, err := Verify(w.sign(t, w.ticket()), w.trust, w.checks())
	if err != nil {
		t.Fatal(err)
	}
	doc, l, err := NewLease(tk, "princeton_codeen", "node1.test", w.now, w.now.Add(time.Hour), w.node)
	if err != nil {
		t.Fatal(err)
	}
	c := Checks{Now: w.now.Add(time.Minute), Node: "node1.test", Principal: w.user}
	got, err := VerifyLease(doc, w.trust, c)
	if err != nil {
		t.Fatalf("VerifyLease = %v", err)
	}
	if diff := cmp.Diff(l, got); diff != "" {
		t.Errorf("VerifyLease (-signed +verified):\n%s", diff)
	}
	if got.TicketID != tk.ID || got.Renewals != 0 || !cmp.Equal(got.Resources, tk.Resources) {
		t.Errorf("lease %+v does not carry the ticket's terms %+v", got, tk)
	}
	doc2, l2, err := Renew(*l, w.now.Add(30*time.Minute), w.now.Add(3*time.Hour), w.node)
	if err != nil {
		t.Fatal(err)
	}
	c.Now = w.now.Add(2 * time.Hour)
	got2, err := VerifyLease(doc2, w.trust, c)
	if err != nil || got2.Renewals != 1 || got2.ID != l.ID || !cmp.Equal(l2, got2) {
		t.Errorf("VerifyLease(renewed) = %+v, %v; want renewal 1 of the same lease", got2, err)
	}
	if _, err := VerifyLease(doc, w.trust, c); !errors.Is(err, errdefs.ErrExpired) {
		t.Errorf("VerifyLease(old lease after its expiry) = %v, want ErrExpired", err)
	}
	if _, _, err := Renew(*l2, w.now, w.now.Add(time.Hour), w.node); !errors.Is(err, errdefs.ErrInvalid) {
		t.Errorf("Renew to an earlier expiry = %v, want ErrInvalid", err)
	}

	plcSigned, _ := SignLease(*l, w.plc)
	forged, _ := SignLease(*l, w.stranger)
	other := *l
	other.Issuer = "node2.test"
	otherNode, _ := SignLease(other, w.node)
	c.Now = w.now.Add(time.Minute)
	for _, tc := range []struct {
		name string
		doc  string
		c    Checks
		want error
	}{
		{"signed by PLC", plcSigned, c, errdefs.ErrDenied},
		{"untrusted signer", forged, c, errdefs.ErrDenied},
		{"names another node", otherNode, c, errdefs.ErrDenied},
		{"ticket passed as a lease", w.sign(t, w.ticket()), c, errdefs.ErrInvalid},
		{"wrong node", doc, Checks{Now: c.Now, Node: "node2.test"}, errdefs.ErrDenied},
		{"wrong principal", doc, Checks{Now: c.Now, Principal: w.other}, errdefs.ErrDenied},
		{"tampered", strings.Replace(doc, ".", ".e", 1), c, errdefs.ErrDenied},
	} {
		if _, err := VerifyLease(tc.doc, w.trust, tc.c); !errors.Is(err, tc.want) {
			t.Errorf("VerifyLease(%s) = %v, want %v", tc.name, err, tc.want)
		}
	}
}

func TestTrustRotation(t *testing.T) {
	w := newWorld(t)
	doc := w.sign(t, w.ticket())
	next, _ := cred.GenerateKey()
	if err := w.trust.Add(Issuer{Role: RolePLC, Name: "plc.test", Key: next.Public()}); err != nil {
		t.Fatal(err)
	}
	newDoc, _ := Sign(w.ticket(), "plc.test", next)
	for _, d := range []string{doc, newDoc} {
		if _, err := Verify(d, w.trust, w.checks()); err != nil {
			t.Errorf("during rotation, Verify = %v", err)
		}
	}
	w.trust.Remove(w.plc.Fingerprint())
	if _, err := Verify(doc, w.trust, w.checks()); !errors.Is(err, errdefs.ErrDenied) {
		t.Errorf("after rotation, Verify(old key's ticket) = %v, want ErrDenied", err)
	}
	if _, err := Verify(newDoc, w.trust, w.checks()); err != nil {
		t.Errorf("after rotation, Verify(new key's ticket) = %v", err)
	}
	if len(w.trust.Issuers()) != 2 {
		t.Errorf("Issuers() = %v, want the node and the new PLC key", w.trust.Issuers())
	}
	if err := w.trust.Add(Issuer{Role: "admin", Name: "x", Key: next.Public()}); !errors.Is(err, errdefs.ErrInvalid) {
		t.Errorf("Add(role admin) = %v, want ErrInvalid", err)
	}
}

func TestSignRefusesBadTerms(t *testing.T) {
	w := newWorld(t)
	for name, edit := range map[string]func(*Ticket){
		"no node":         func(t *Ticket) { t.Node = "" },
		"no slice":        func(t *Ticket) { t.Slice = "" },
		"bad principal":   func(t *Ticket) { t.Principal = "bob" },
		"empty window":    func(t *Ticket) { t.NotAfter = t.NotBefore },
		"negative shares": func(t *Ticket) { t.Resources.CPUShares = -1 },
	} {
		tk := w.ticket()
		edit(&tk)
		if _, err := Sign(tk, "plc.test", w.plc); !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("Sign(%s) = %v, want ErrInvalid", name, err)
		}
	}
	if _, err := Sign(w.ticket(), "", w.plc); !errors.Is(err, errdefs.ErrInvalid) {
		t.Errorf("Sign(no issuer) = %v, want ErrInvalid", err)
	}
}

// assertNoSecrets checks an error message quotes neither the document nor
// its signature.
func assertNoSecrets(t *testing.T, msg, doc string) {
	t.Helper()
	parts := strings.Split(doc, ".")
	for _, p := range parts {
		if len(p) >= 16 && strings.Contains(msg, p[:16]) {
			t.Errorf("error message quotes the document: %s", msg)
		}
	}
}

func TestTrustFile(t *testing.T) {
	w := newWorld(t)
	var lines []string
	for _, iss := range w.trust.Issuers() {
		lines = append(lines, TrustLine(iss))
	}
	text := "# plab trust roots\n\n" + strings.Join(lines, "\n") + "\n"
	got, err := ParseTrust([]byte(text))
	if err != nil {
		t.Fatalf("ParseTrust(%q) = %v", text, err)
	}
	if diff := cmp.Diff(w.trust.Issuers(), got.Issuers(), cmp.Comparer(func(a, b cred.PublicKey) bool { return a.Equal(b) })); diff != "" {
		t.Errorf("trust file round trip (-want +got):\n%s", diff)
	}
	key := w.plc.Public().AuthorizedKey()
	for _, bad := range []string{
		key,
		key + " admin:x",
		key + " plc:",
		key + " plc",
		"ssh-rsa AAAA plc:x",
		key + " plc:x extra",
	} {
		if _, err := ParseTrust([]byte(bad)); !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("ParseTrust(%q) = %v, want ErrInvalid", bad, err)
		}
	}
}
