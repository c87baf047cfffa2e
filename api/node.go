package api

import "time"

// The node API: what a user (or the CLI) asks of a node, over HTTPS with
// the node's testbed certificate, each request signed with the user's SSH
// key. A request may carry the signer's public key in the KeyHeader so a
// node that has never seen the key can check the signature; the node still
// requires the key's fingerprint to be a ticket's principal or one of the
// sliver's keys.

// KeyHeader carries the signer's public key (an authorized_keys line).
const KeyHeader = "Plab-Key"

// Redemption asks a node to redeem a ticket (newlease).
type Redemption struct {
	Ticket string `json:"ticket"`
	// LeaseSeconds asks for a lease shorter than the node would grant (0:
	// as long as the ticket and the node's max_lease allow); renewals
	// extend it as usual.
	LeaseSeconds int64 `json:"lease_seconds,omitempty"`
}

// LeaseRenewal asks a node to extend a sliver's lease (renewlease). A fresher
// ticket of the slice (after the slice was renewed at PLC) raises the limit
// up to which the node renews.
type LeaseRenewal struct {
	Ticket string `json:"ticket,omitempty"`
}

// Lease is a node's answer to a redemption or renewal: the signed lease and
// its terms.
type Lease struct {
	Sliver    string    `json:"sliver"`
	Slice     string    `json:"slice"`
	ID        string    `json:"id"`
	TicketID  string    `json:"ticket_id"`
	Lease     string    `json:"lease"`
	NotAfter  time.Time `json:"not_after"`
	Renewals  int       `json:"renewals"`
	Delegated bool      `json:"delegated,omitempty"`
}

// Sliver is a sliver's status on a node.
type Sliver struct {
	Name      string     `json:"name"`
	Slice     string     `json:"slice"`
	State     string     `json:"state"`
	Principal string     `json:"principal"`
	Delegated bool       `json:"delegated,omitempty"`
	Lease     Lease      `json:"lease"`
	Resources Resources  `json:"resources"`
	Keys      int        `json:"keys"`
	Usage     SliceUsage `json:"usage"`
	// Initscript is the state of the slice's initscript, when it has one:
	// "running", "exit 0", "exit 3", "failed: …".
	Initscript string `json:"initscript,omitempty"`
}

// SSHKey is one key that may log into a sliver.
type SSHKey struct {
	// Key is the authorized_keys line.
	Key         string `json:"key"`
	Fingerprint string `json:"fingerprint,omitempty"`
}

// NodeStatus is what a node says of itself.
type NodeStatus struct {
	Hostname string    `json:"hostname"`
	Version  string    `json:"version,omitempty"`
	Capacity Resources `json:"capacity"`
	Free     Resources `json:"free"`
	Slivers  int       `json:"slivers"`
	// PLC is the state of the sync with PLC.
	PLC SyncStatus `json:"plc"`
}

// SyncStatus is a node's view of its link with PLC.
type SyncStatus struct {
	URL        string    `json:"url"`
	Change     int64     `json:"change"`
	LastSync   time.Time `json:"last_sync,omitzero"`
	LastReport time.Time `json:"last_report,omitzero"`
	Error      string    `json:"error,omitempty"`
}
