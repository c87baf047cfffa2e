//go:build linux

package node

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/plab/plab/api"
	"github.com/plab/plab/errdefs"
	"github.com/plab/plab/plc/plctest"
)

// TestNodeAPI: keys of a direct sliver (addkey, delkey, getsshkeys), who may
// act on a sliver, and bad requests answered with clear errors.
func TestNodeAPI(t *testing.T) {
	w := newWorld(t, worldOpts{})
	n := w.node
	bob := plctest.NewUser(t, "bob@ucb.test")
	carol := plctest.NewUser(t, "carol@ucb.test")
	w.plc.Slice("ucb_a", "direct", w.alice, 24*time.Hour)
	if _, err := w.redeem(w.alice, n, w.ticket(w.alice, "ucb_a", n, api.Resources{})); err != nil {
		t.Fatal(err)
	}
	alice, bobC, carolC := w.client(w.alice, n), w.client(bob, n), w.client(carol, n)

	// Strangers can do nothing with the sliver.
	mustErr(t, "status as a stranger", bobC.Do(ctx, "GET", "/v1/slivers/ucb_a", nil, nil), errdefs.ErrDenied)
	mustErr(t, "delete as a stranger", bobC.Do(ctx, "DELETE", "/v1/slivers/ucb_a", nil, nil), errdefs.ErrDenied)
	mustErr(t, "addkey as a stranger", bobC.Do(ctx, "POST", "/v1/slivers/ucb_a/keys", api.SSHKey{Key: bob.Pub}, nil), errdefs.ErrDenied)
	var list api.List[api.Sliver]
	if err := bobC.Do(ctx, "GET", "/v1/slivers", nil, &list); err != nil || len(list.Items) != 0 {
		t.Errorf("list as a stranger = %+v, %v; want nothing", list, err)
	}

	// addkey lets bob in; getsshkeys lists both; delkey takes bob out.
	var k api.SSHKey
	if err := alice.Do(ctx, "POST", "/v1/slivers/ucb_a/keys", api.SSHKey{Key: bob.Pub}, &k); err != nil || k.Fingerprint != string(bob.Fingerprint()) {
		t.Fatalf("addkey = %+v, %v", k, err)
	}
	var keys api.List[api.SSHKey]
	if err := bobC.Do(ctx, "GET", "/v1/slivers/ucb_a/keys", nil, &keys); err != nil || len(keys.Items) != 2 {
		t.Errorf("getsshkeys as bob = %+v, %v", keys, err)
	}
	if got, ok := n.n.M.AuthorizedKeys("ucb_a"); !ok || len(got) != 2 {
		t.Errorf("AuthorizedKeys = %v, %v", got, ok)
	}
	if err := alice.Do(ctx, "DELETE", "/v1/slivers/ucb_a/keys/"+url.PathEscape(string(bob.Fingerprint())), nil, nil); err != nil {
		t.Fatalf("delkey: %v", err)
	}
	mustErr(t, "status as bob after delkey", bobC.Do(ctx, "GET", "/v1/slivers/ucb_a", nil, nil), errdefs.ErrDenied)
	mustErr(t, "delkey of an absent key", alice.Do(ctx, "DELETE", "/v1/slivers/ucb_a/keys/"+url.PathEscape(string(bob.Fingerprint())), nil, nil), errdefs.ErrNotFound)
	mustErr(t, "addkey of junk", alice.Do(ctx, "POST", "/v1/slivers/ucb_a/keys", api.SSHKey{Key: "ssh-rsa AAAA"}, nil), errdefs.ErrInvalid)
	mustErr(t, "delkey with a bad fingerprint", alice.Do(ctx, "DELETE", "/v1/slivers/ucb_a/keys/MD5:xx", nil, nil), errdefs.ErrInvalid)
	mustErr(t, "status of no sliver", alice.Do(ctx, "GET", "/v1/slivers/ucb_none", nil, nil), errdefs.ErrNotFound)
	mustErr(t, "redeem without a ticket", alice.Do(ctx, "POST", "/v1/leases", api.Redemption{}, nil), errdefs.ErrInvalid)
	mustErr(t, "an unknown route", alice.Do(ctx, "GET", "/v1/frobnicate", nil, nil), errdefs.ErrNotFound)
	// A signer whose key the node has never seen and who does not send it.
	carolC.Sign = func(r *http.Request) error { return signOnly(r, carol, w) }
	err := carolC.Do(ctx, "GET", "/v1/slivers", nil, nil)
	if !errors.Is(err, errdefs.ErrDenied) || !strings.Contains(err.Error(), api.KeyHeader) {
		t.Errorf("request with an unknown key = %v; want refused, naming the %s header", err, api.KeyHeader)
	}

	// Raw HTTP: unsigned, malformed JSON, a bad key header.
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: w.plc.TLSConfigFor(n.host)}}
	for _, tc := range []struct {
		name, method, path, body string
		header                   map[string]string
		status                   int
		want                     string
	}{
		{"unsigned", "GET", "/v1/slivers", "", nil, 401, "not signed"},
		{"bad key header", "GET", "/v1/slivers", "", map[string]string{api.KeyHeader: "nonsense"}, 400, api.KeyHeader},
		{"status page", "GET", "/", "", nil, 200, "plab node n1.ucb.test"},
		{"metrics", "GET", "/metrics", "", nil, 200, "plab_node_slivers 1"},
		{"node status", "GET", "/v1/node", "", nil, 200, `"hostname":"n1.ucb.test"`},
	} {
		req, _ := http.NewRequest(tc.method, n.url+tc.path, strings.NewReader(tc.body))
		for k, v := range tc.header {
			req.Header.Set(k, v)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || !bytes.Contains(body, []byte(tc.want)) {
			t.Errorf("%s: %d %s; want %d containing %q", tc.name, resp.StatusCode, body, tc.status, tc.want)
		}
	}
	req, _ := http.NewRequest("POST", n.url+"/v1/leases", strings.NewReader(`{"ticket": 5}`))
	req.Header.Set("Content-Type", "application/json")
	if err := alice.Sign(req); err != nil {
		t.Fatal(err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 400 || !bytes.Contains(body, []byte(`field \"ticket\"`)) {
		t.Errorf("malformed redemption: %d %s; want 400 naming the field", resp.StatusCode, body)
	}
}
