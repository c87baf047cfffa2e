package plc

import (
	"crypto/rand"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/crypto/ssh"

	"github.com/plab/plab/api"
	"github.com/plab/plab/cred"
	"github.com/plab/plab/internal/pgtest"
)

// TestReportSSH: a node's report carries its SSH gateway's host key and
// port, and its API's port; PLC serves them in the node's record, keeps
// them through reports without them, replaces them with new ones (a new
// key audited once per change), and refuses a bad key or port with 400,
// storing nothing of that report. On both stores.
func TestReportSSH(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) { testReportSSH(t, "") })
	t.Run("postgres", func(t *testing.T) {
		srv := pgtest.Start(t, pgtest.Options{NoFsync: true})
		testReportSSH(t, srv.NewDatabase(t))
	})
}

func testReportSSH(t *testing.T, dsn string) {
	const host = "n1.ssh.test"
	w := newWorldDSN(t, dsn)
	w.admin.do(t, "POST", "/v1/sites", api.Site{LoginBase: "ssh", Name: "SSH", MaxSlices: 5, MaxSlivers: 50, Enabled: true}, nil)
	w.admin.do(t, "POST", "/v1/nodes", api.Node{Hostname: host, Site: "ssh"}, nil)
	nc := w.nodeClient(enroll(t, w, host))
	key1, key2 := hostKey(t), hostKey(t)

	report := func(rep api.Report) error { return nc.Do(ctx, "POST", "/v1/node/report", rep, nil) }
	node := func() api.Node {
		t.Helper()
		var n api.Node
		w.admin.do(t, "GET", "/v1/nodes/"+host, nil, &n)
		return n
	}
	slivers := func() int {
		t.Helper()
		var ads api.List[api.Ad]
		w.admin.do(t, "GET", "/v1/ads", nil, &ads)
		if len(ads.Items) != 1 {
			t.Fatalf("ads = %+v, want the one node", ads.Items)
		}
		return ads.Items[0].Slivers
	}
	changes := func() int {
		t.Helper()
		var evs api.List[api.Event]
		w.admin.do(t, "GET", "/v1/events?limit=1000", nil, &evs)
		n := 0
		for _, e := range evs.Items {
			if e.Action == "node.ssh_host_key" && e.Actor == "node "+host && e.Object == host && e.Result == "ok" {
				n++
			}
		}
		return n
	}

	// An older node reports without them: nothing to pin yet.
	if err := report(api.Report{Slivers: 1}); err != nil {
		t.Fatalf("report without SSH fields: %v", err)
	}
	if n := node(); n.SSHHostKey != "" || n.SSHPort != 0 {
		t.Errorf("node before any SSH report = %+v; want no host key or port", n)
	}

	// A key with a comment is stored alone, as "TYPE BASE64"; the record
	// and the listing show it; a report without the fields keeps it.
	if err := report(api.Report{Slivers: 2, SSHHostKey: key1 + " root@" + host + "\n", SSHPort: 2222}); err != nil {
		t.Fatalf("report with host key and port: %v", err)
	}
	if n := node(); n.SSHHostKey != key1 || n.SSHPort != 2222 {
		t.Errorf("node after the report = %q port %d; want %q port 2222", n.SSHHostKey, n.SSHPort, key1)
	}
	var list api.List[api.Node]
	w.admin.do(t, "GET", "/v1/nodes?site=ssh", nil, &list)
	if len(list.Items) != 1 || list.Items[0].SSHHostKey != key1 || list.Items[0].SSHPort != 2222 {
		t.Errorf("GET /v1/nodes = %+v; want the node with its host key and port", list.Items)
	}
	if err := report(api.Report{Slivers: 3}); err != nil {
		t.Fatalf("report without SSH fields: %v", err)
	}
	if err := report(api.Report{Slivers: 3, SSHHostKey: key1, SSHPort: 2222}); err != nil {
		t.Fatalf("the same host key again: %v", err)
	}
	// The API's port: recorded on its own, kept by reports without it; a
	// bad one refused with nothing of the report stored, not even a new
	// SSH key sent with it.
	if err := report(api.Report{Slivers: 3, APIPort: 8140}); err != nil {
		t.Fatalf("report with the API port: %v", err)
	}
	if err := report(api.Report{Slivers: 3}); err != nil {
		t.Fatal(err)
	}
	if n := node(); n.APIPort != 8140 {
		t.Errorf("node's API port = %d, want 8140", n.APIPort)
	}
	for _, bad := range []int{-1, 65536} {
		err := report(api.Report{Slivers: 9, SSHHostKey: key2, SSHPort: 22, APIPort: bad})
		var re *api.ResponseError
		if !errors.As(err, &re) || re.Status != http.StatusBadRequest || re.Err.Code != api.CodeInvalid || !strings.Contains(re.Err.Message, "api_port") {
			t.Errorf("report with api_port %d = %v; want 400 invalid naming api_port", bad, err)
		}
		if n := node(); n.APIPort != 8140 || n.SSHHostKey != key1 || n.SSHPort != 2222 || slivers() != 3 {
			t.Errorf("a refused report changed the node: API port %d, SSH key %q port %d, slivers %d", n.APIPort, n.SSHHostKey, n.SSHPort, slivers())
		}
	}

	before := node()
	if before.SSHHostKey != key1 || before.SSHPort != 2222 {
		t.Errorf("node after reports without or with the same SSH fields = %q port %d; want them kept", before.SSHHostKey, before.SSHPort)
	}
	if got := changes(); got != 1 {
		t.Errorf("%d node.ssh_host_key events after one change, want 1", got)
	}

	cert := hostCert(t)
	for _, tc := range []struct {
		name    string
		key     string
		port    int
		mention string // the field the message names
	}{
		{"not a key", "hello", 22, "ssh_host_key"},
		{"truncated key", "ssh-ed25519 AAAA", 22, "ssh_host_key"},
		{"two keys on a line", key1 + " " + key2, 22, "ssh_host_key"},
		{"two keys on two lines", key1 + "\n" + key2, 22, "ssh_host_key"},
		{"options", `command="/bin/true" ` + key2, 22, "ssh_host_key"},
		{"certificate", cert, 22, "ssh_host_key"},
		{"oversized", "ssh-rsa " + strings.Repeat("A", maxHostKey), 22, "ssh_host_key"},
		{"port without key", "", 22, "ssh_host_key"},
		{"key without port", key2, 0, "ssh_port"},
		{"port 65536", key2, 65536, "ssh_port"},
		{"negative port", key2, -22, "ssh_port"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := report(api.Report{Slivers: 99, SSHHostKey: tc.key, SSHPort: tc.port})
			var re *api.ResponseError
			if !errors.As(err, &re) || re.Status != http.StatusBadRequest || re.Err.Code != api.CodeInvalid || !strings.Contains(re.Err.Message, tc.mention) {
				t.Fatalf("report with ssh_host_key %q, ssh_port %d = %v; want 400 invalid naming %s", tc.key, tc.port, err, tc.mention)
			}
			if diff := cmp.Diff(before, node()); diff != "" {
				t.Errorf("node after a refused report (-before +after):\n%s", diff)
			}
			if got := slivers(); got != 3 {
				t.Errorf("ad after a refused report: %d slivers, want 3 as last reported", got)
			}
		})
	}

	// A new key and port replace the old ones.
	if err := report(api.Report{Slivers: 4, SSHHostKey: key2, SSHPort: 22}); err != nil {
		t.Fatalf("report with a new host key: %v", err)
	}
	if n := node(); n.SSHHostKey != key2 || n.SSHPort != 22 {
		t.Errorf("node after a new key = %q port %d; want %q port 22", n.SSHHostKey, n.SSHPort, key2)
	}
	if got := changes(); got != 2 {
		t.Errorf("%d node.ssh_host_key events after two changes, want 2", got)
	}
}

// hostKey is a fresh Ed25519 public key as "ssh-ed25519 AAAA…".
func hostKey(t *testing.T) string {
	t.Helper()
	k, err := cred.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k.Public().AuthorizedKey()
}

// hostCert is an SSH host certificate in authorized_keys form.
func hostCert(t *testing.T) string {
	t.Helper()
	k, err := cred.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromSigner(k.CryptoSigner())
	if err != nil {
		t.Fatal(err)
	}
	c := &ssh.Certificate{Key: k.Public().SSH(), CertType: ssh.HostCert, ValidPrincipals: []string{"n1.ssh.test"}, ValidBefore: ssh.CertTimeInfinity}
	if err := c.SignCert(rand.Reader, signer); err != nil {
		t.Fatal(err)
	}
	return strings.TrimSuffix(string(ssh.MarshalAuthorizedKey(c)), "\n")
}

// FuzzCheckSSH: checkSSH never panics, and a key it accepts comes back as
// one key on one line that it accepts again unchanged.
func FuzzCheckSSH(f *testing.F) {
	key := "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIeknKBaNq78otaNDlhtcPDl4kxxGDNM5Fq3Ry8fHcjs"
	for _, s := range []string{"", key, key + " root@node", key + " " + key, key + "\n" + key, `command="x" ` + key, "ssh-ed25519 AAAA", "# " + key} {
		f.Add(s, 22)
	}
	f.Fuzz(func(t *testing.T, hostKey string, port int) {
		got, err := checkSSH(hostKey, port)
		if err != nil || got == "" {
			return
		}
		if strings.ContainsAny(got, "\r\n") || port < 1 || port > 65535 {
			t.Fatalf("checkSSH(%q, %d) = %q: not one key on one line, or a bad port", hostKey, port, got)
		}
		if again, err := checkSSH(got, port); again != got || err != nil {
			t.Fatalf("checkSSH(%q) = %q, %v; want it unchanged", got, again, err)
		}
	})
}
