// Package api holds the wire types of PLC's HTTPS+JSON API (under /v1) and
// the error body every endpoint answers with. It imports nothing else of
// plab but errdefs, so the CLI, the node and any other client can use it.
//
// Every request but GET /v1/ca and POST /v1/enroll is authenticated: users
// sign requests with their SSH key (RFC 9421, see cred/httpsig); nodes
// present their certificate (mTLS) on /v1/node/… .
package api

import (
	"errors"
	"time"

	"github.com/plab/plab/errdefs"
)

// Error is the body of every error response. Code is stable and meant for
// programs; Message is for people and says what to do next.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Error codes.
const (
	CodeNotFound        = "not_found"
	CodeConflict        = "conflict"
	CodeInvalid         = "invalid"
	CodeDenied          = "denied"
	CodeExpired         = "expired"
	CodeNoCapacity      = "no_capacity"
	CodeUnavailable     = "unavailable"
	CodeUnauthenticated = "unauthenticated"
	CodeInternal        = "internal"
)

// CodeOf returns the code for err's kind.
func CodeOf(err error) string {
	switch {
	case errors.Is(err, errdefs.ErrNotFound):
		return CodeNotFound
	case errors.Is(err, errdefs.ErrConflict):
		return CodeConflict
	case errors.Is(err, errdefs.ErrInvalid):
		return CodeInvalid
	case errors.Is(err, errdefs.ErrDenied):
		return CodeDenied
	case errors.Is(err, errdefs.ErrExpired):
		return CodeExpired
	case errors.Is(err, errdefs.ErrNoCapacity):
		return CodeNoCapacity
	case errors.Is(err, errdefs.ErrUnavailable):
		return CodeUnavailable
	}
	return CodeInternal
}

// Site is an institution.
type Site struct {
	LoginBase  string    `json:"login_base"`
	Name       string    `json:"name"`
	MaxSlices  int       `json:"max_slices"`
	MaxSlivers int       `json:"max_slivers"`
	Enabled    bool      `json:"enabled"`
	Created    time.Time `json:"created,omitzero"`
}

// Person is an account.
type Person struct {
	Email   string    `json:"email"`
	Name    string    `json:"name"`
	Site    string    `json:"site,omitempty"`
	Roles   []string  `json:"roles"`
	Enabled bool      `json:"enabled"`
	Created time.Time `json:"created,omitzero"`
}

// Key is a person's SSH public key.
type Key struct {
	Fingerprint string    `json:"fingerprint,omitempty"`
	PublicKey   string    `json:"public_key"`
	Created     time.Time `json:"created,omitzero"`
}

// Node is a machine of a site.
type Node struct {
	Hostname    string            `json:"hostname"`
	Site        string            `json:"site"`
	Addresses   []string          `json:"addresses,omitempty"`
	BootState   string            `json:"boot_state"`
	Tags        map[string]string `json:"tags,omitempty"`
	Capacity    *Resources        `json:"capacity,omitempty"`
	LastContact time.Time         `json:"last_contact,omitzero"`
	Created     time.Time         `json:"created,omitzero"`
	// SSHHostKey is the public host key of the node's SSH gateway in
	// authorized_keys form ("ssh-ed25519 AAAA…"), as the node last
	// reported it: the key a client pins. Empty until the node reports
	// one; PLC ignores it in a request.
	SSHHostKey string `json:"ssh_host_key,omitempty"`
	// SSHPort is the port of the node's SSH gateway, reported with
	// SSHHostKey; PLC ignores it in a request.
	SSHPort int `json:"ssh_port,omitempty"`
	// APIPort is the port of the node's API, as the node last reported
	// it (users reach https://ADDRESS:APIPort); PLC ignores it in a request.
	APIPort int `json:"api_port,omitempty"`
}

// Boot states of a node.
const (
	BootStateBoot      = "boot"
	BootStateSafeboot  = "safeboot"
	BootStateReinstall = "reinstall"
	BootStateDisabled  = "disabled"
)

// NodeGroup is the set of nodes whose tag Tag has value Value.
type NodeGroup struct {
	Name  string `json:"name"`
	Tag   string `json:"tag"`
	Value string `json:"value"`
}

// Slice is a named set of slivers.
type Slice struct {
	Name          string    `json:"name"`
	Site          string    `json:"site,omitempty"`
	Description   string    `json:"description"`
	URL           string    `json:"url"`
	Instantiation string    `json:"instantiation"`
	Enabled       bool      `json:"enabled"`
	MaxNodes      int       `json:"max_nodes"`
	Expires       time.Time `json:"expires,omitzero"`
	Members       []string  `json:"members,omitempty"`
	Nodes         []string  `json:"nodes,omitempty"`
	Created       time.Time `json:"created,omitzero"`
}

// Instantiations of a slice.
const (
	InstantiationDirect    = "direct"
	InstantiationDelegated = "delegated"
)

// Attribute is a slice attribute, global or scoped to a node group or a
// node.
type Attribute struct {
	ID        int64  `json:"id,omitempty"`
	Name      string `json:"name"`
	Value     string `json:"value"`
	Node      string `json:"node,omitempty"`
	NodeGroup string `json:"node_group,omitempty"`
}

// Resources are amounts of a node's resources: CPU in millicores, memory
// and disk in bytes, rates in bits per second, ports as "tcp/80" or
// "udp/9000-9010".
type Resources struct {
	CPUShares   int      `json:"cpu_shares,omitempty"`
	CPUReserve  int64    `json:"cpu_reserve,omitempty"`
	CPULimit    int64    `json:"cpu_limit,omitempty"`
	MemoryBytes int64    `json:"memory_bytes,omitempty"`
	Pids        int64    `json:"pids,omitempty"`
	DiskBytes   int64    `json:"disk_bytes,omitempty"`
	NetMinRate  int64    `json:"net_min_rate,omitempty"`
	NetMaxRate  int64    `json:"net_max_rate,omitempty"`
	Ports       []string `json:"ports,omitempty"`
}

// Renewal asks for a slice's expiry to move.
type Renewal struct {
	Expires time.Time `json:"expires"`
}

// List is a page of a listing; Next, when set, is the after= value that
// gets the next page.
type List[T any] struct {
	Items []T    `json:"items"`
	Next  string `json:"next,omitempty"`
}

// Whoami says who PLC thinks the caller is.
type Whoami struct {
	Email       string   `json:"email"`
	Roles       []string `json:"roles"`
	Site        string   `json:"site,omitempty"`
	Fingerprint string   `json:"fingerprint"`
}

// Event is an audit log entry.
type Event struct {
	ID     int64     `json:"id"`
	At     time.Time `json:"at"`
	Actor  string    `json:"actor"`
	Action string    `json:"action"`
	Object string    `json:"object"`
	Result string    `json:"result"`
}

// CA is what PLC publishes to everyone: its CA root and the keys it signs
// tickets with (trust-file lines, see cred/ticket).
type CA struct {
	Name       string   `json:"name"`
	RootPEM    string   `json:"root_pem"`
	TicketKeys []string `json:"ticket_keys"`
}

// TicketRequest asks PLC for tickets for a slice on some nodes.
type TicketRequest struct {
	Nodes     []string  `json:"nodes"`
	Resources Resources `json:"resources"`
}

// IssuedTicket is one node's ticket: a signed JWS to redeem at that node.
type IssuedTicket struct {
	Node     string    `json:"node"`
	ID       string    `json:"id"`
	Ticket   string    `json:"ticket"`
	NotAfter time.Time `json:"not_after"`
}

// Tickets answers a TicketRequest.
type Tickets struct {
	Tickets []IssuedTicket `json:"tickets"`
}

// Ad advertises a node and what it has free.
type Ad struct {
	Node       string            `json:"node"`
	Site       string            `json:"site"`
	BootState  string            `json:"boot_state"`
	Tags       map[string]string `json:"tags,omitempty"`
	Free       Resources         `json:"free"`
	Slivers    int               `json:"slivers"`
	ReportedAt time.Time         `json:"reported_at,omitzero"`
}

// EnrollToken is a one-time token that lets a node enroll.
type EnrollToken struct {
	Node    string    `json:"node"`
	Token   string    `json:"token"`
	Expires time.Time `json:"expires"`
}

// EnrollRequest is a node asking for its certificate.
type EnrollRequest struct {
	Hostname string `json:"hostname"`
	Token    string `json:"token"`
	// CSR is the DER certificate request, base64 (standard, padded).
	CSR []byte `json:"csr"`
}

// Enrollment is what an enrolled node needs: its certificate and PLC's
// trust roots.
type Enrollment struct {
	CertificatePEM string `json:"certificate_pem"`
	CA             CA     `json:"ca"`
}

// Report is a node's resource report.
type Report struct {
	Load        float64               `json:"load"`
	CPUs        int                   `json:"cpus"`
	Capacity    Resources             `json:"capacity"`
	Free        Resources             `json:"free"`
	Slivers     int                   `json:"slivers"`
	Slices      map[string]SliceUsage `json:"slices,omitempty"`
	CollectedAt time.Time             `json:"collected_at,omitzero"`
	// SSHHostKey is the public host key of the node's SSH gateway, one
	// key in authorized_keys form ("ssh-ed25519 AAAA…"). PLC stores it
	// with SSHPort and serves both in the node's record; a report
	// without them (an older node) leaves the stored ones as they are.
	SSHHostKey string `json:"ssh_host_key,omitempty"`
	// SSHPort is the port the node's SSH gateway listens on (1 to
	// 65535), sent with SSHHostKey.
	SSHPort int `json:"ssh_port,omitempty"`
	// APIPort is the port the node's API listens on (1 to 65535); a
	// report without it leaves the stored one.
	APIPort int `json:"api_port,omitempty"`
}

// SliceUsage is one slice's use of a node.
type SliceUsage struct {
	CPUMillis   int64 `json:"cpu_millis"`
	MemoryBytes int64 `json:"memory_bytes"`
	DiskBytes   int64 `json:"disk_bytes"`
	TxBytes     int64 `json:"tx_bytes,omitempty"`
	RxBytes     int64 `json:"rx_bytes,omitempty"`
}

// Sync is what a node must host of the delegated slices, as of change
// number Change.
type Sync struct {
	Change int64       `json:"change"`
	Slices []NodeSlice `json:"slices"`
}

// NodeSlice is a delegated slice on one node: its ticket (principal: the
// node), its members' keys and its attributes as they apply there.
type NodeSlice struct {
	Name       string            `json:"name"`
	Enabled    bool              `json:"enabled"`
	Expires    time.Time         `json:"expires"`
	Ticket     string            `json:"ticket,omitempty"`
	Keys       []string          `json:"keys"`
	Attributes map[string]string `json:"attributes,omitempty"`
}

// SiteUpdate changes a site (PATCH): fields left out stay as they are.
type SiteUpdate struct {
	Name       *string `json:"name,omitempty"`
	MaxSlices  *int    `json:"max_slices,omitempty"`
	MaxSlivers *int    `json:"max_slivers,omitempty"`
	Enabled    *bool   `json:"enabled,omitempty"`
}

// PersonUpdate changes an account (PATCH): fields left out stay.
type PersonUpdate struct {
	Name    *string  `json:"name,omitempty"`
	Site    *string  `json:"site,omitempty"`
	Roles   []string `json:"roles,omitempty"`
	Enabled *bool    `json:"enabled,omitempty"`
}

// NodeUpdate changes a node (PATCH): fields left out stay; Tags, when
// given, replace all tags.
type NodeUpdate struct {
	Addresses []string          `json:"addresses,omitempty"`
	BootState *string           `json:"boot_state,omitempty"`
	Tags      map[string]string `json:"tags,omitempty"`
	Capacity  *Resources        `json:"capacity,omitempty"`
}

// SliceUpdate changes a slice (PATCH): fields left out stay. Expiry moves
// with POST …/renew.
type SliceUpdate struct {
	Description *string `json:"description,omitempty"`
	URL         *string `json:"url,omitempty"`
	Enabled     *bool   `json:"enabled,omitempty"`
	MaxNodes    *int    `json:"max_nodes,omitempty"`
}

// Ptr returns a pointer to v, for the fields of updates.
func Ptr[T any](v T) *T { return &v }
