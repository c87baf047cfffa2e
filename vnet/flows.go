//go:build linux

package vnet

// The flow log answers "which slice sent traffic to X?" (DESIGN.md: every
// flow can be traced back to the slice that sent it). It listens to the
// node namespace's conntrack events, NEW and DESTROY, rather than polling
// the table: a single UDP packet or a refused SYN lives in the table for
// seconds, but it still makes one NEW event. Every flow whose original
// source (outbound) or reply source (inbound, DNATed to a reserved port)
// is a sliver's address is written to SQLite with the slice that holds
// that address at the time.

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ti-mo/conntrack"
	"github.com/ti-mo/netfilter"
	"golang.org/x/sys/unix"

	"github.com/plab/plab/errdefs"
	_ "modernc.org/sqlite" // the flow log's database
)

// FlowLogName is the flow log's file in the node's state directory.
const FlowLogName = "flows.db"

// DefaultFlowRetention is how long the flow log keeps a flow after it ended.
const DefaultFlowRetention = 7 * 24 * time.Hour

// flowRefresh is how often the log reads the conntrack table: open flows
// get their counters (NEW events carry none), and flows whose DESTROY
// never came are closed as missed.
const flowRefresh = 5 * time.Minute

// Flow is one sliver connection (one conntrack entry) as the flow log
// recorded it. Out and In are seen from the sliver: out is what it sent.
type Flow struct {
	// Slice is the slice whose sliver held the address (a sliver is named
	// after its slice).
	Slice string `json:"slice"`
	// Proto is tcp, udp, icmp, or the IP protocol's number.
	Proto string `json:"proto"`
	// Inbound: the remote opened the flow, to a port the slice reserved.
	Inbound bool `json:"inbound"`
	// Sliver is the sliver's end; Node is the node's address and port the
	// remote saw (after source NAT, or the reserved port DNAT took).
	Sliver netip.AddrPort `json:"sliver"`
	Node   netip.AddrPort `json:"node"`
	Remote netip.AddrPort `json:"remote"`
	// Start and End bound the flow; End is zero while it is open.
	Start time.Time `json:"start"`
	End   time.Time `json:"end,omitzero"`
	// Missed: the flow ended while the log was not listening (a restart,
	// or events lost to an overflow). End is when the log noticed, and the
	// counters are the last it saw.
	Missed bool `json:"missed,omitempty"`

	BytesOut   uint64 `json:"bytes_out"`
	PacketsOut uint64 `json:"packets_out"`
	BytesIn    uint64 `json:"bytes_in"`
	PacketsIn  uint64 `json:"packets_in"`
}

// FlowQuery selects flows of the log.
type FlowQuery struct {
	// Dst is the remote's address (either direction). Required.
	Dst netip.Addr
	// Since keeps flows open at or after it (zero: all the log holds).
	Since time.Time
	// Port, when not 0, keeps flows with this remote port.
	Port uint16
}

// FlowLog records slivers' flows in a SQLite database: one writer (the
// log), any number of readers (QueryFlows).
//
//	StartFlowLog: subscribe, resync ──> listening ──(ENOBUFS: counted, logged)──> resubscribe, resync ─┐
//	                                     ^  │  every 5 minutes: resync                                   │
//	                                     │  └──(Close, ctx done)──> closed; the records stay             │
//	                                     └───────────────────────────────────────────────────────────────┘
//
// Resync reads the conntrack table: live flows missing from the log are
// added (open flows get their counters), open flows gone from the table
// are closed as Missed. So a restart keeps the records and loses only the
// exact ends of flows that ended meanwhile, and an overflow loses only
// flows that began and ended within the gap.
type FlowLog struct {
	n    *Net
	db   *sql.DB
	log  *slog.Logger
	opts flowLogOptions

	evs       chan conntrack.Event
	overflows atomic.Uint64

	stop chan struct{}
	done chan struct{}
	once sync.Once
}

type flowLogOptions struct {
	path      string
	retention time.Duration
	rcvbuf    int // the event socket's receive buffer
	queue     int // events decoded, waiting for the writer
}

// StartFlowLog starts recording the slivers' flows at path (the node's is
// <state-dir>/flows.db) and deleting those that ended more than retention
// ago (0: DefaultFlowRetention). It turns on conntrack timestamps in the
// node's namespace. The log runs until Close or until ctx is done; close it
// before n.
func (n *Net) StartFlowLog(ctx context.Context, path string, retention time.Duration) (*FlowLog, error) {
	return n.startFlowLog(ctx, flowLogOptions{path: path, retention: retention, rcvbuf: 8 << 20, queue: 4096})
}

func (n *Net) startFlowLog(ctx context.Context, o flowLogOptions) (*FlowLog, error) {
	if o.retention < 0 {
		return nil, fmt.Errorf("flow log: retention %s must not be negative: %w", o.retention, errdefs.ErrInvalid)
	}
	if o.retention == 0 {
		o.retention = DefaultFlowRetention
	}
	db, err := openFlowDB(o.path)
	if err != nil {
		return nil, err
	}
	fl := &FlowLog{n: n, db: db, log: n.log.With("part", "flow log"), opts: o,
		evs: make(chan conntrack.Event, o.queue), stop: make(chan struct{}), done: make(chan struct{})}
	// Without timestamps, starts are when the event arrived and ends when
	// the entry was destroyed; with them, the kernel's own.
	if err := sysctl(n.ns, "net.netfilter.nf_conntrack_timestamp", "1"); err != nil {
		fl.log.Warn("no conntrack timestamps; flow times are when events arrive", "err", err)
	}
	l, err := fl.listen()
	if err == nil {
		err = fl.resync()
	}
	if err != nil {
		if l != nil {
			l.close(fl.evs)
		}
		db.Close()
		return nil, err
	}
	go fl.run(ctx, l)
	return fl, nil
}

// Close stops recording; the records stay.
func (fl *FlowLog) Close() error {
	fl.once.Do(func() { close(fl.stop) })
	<-fl.done
	return nil
}

// Overflows counts the times events were lost because the event socket
// overflowed (ENOBUFS); each is followed by a resync.
func (fl *FlowLog) Overflows() uint64 { return fl.overflows.Load() }

const flowSchema = `
CREATE TABLE IF NOT EXISTS flows (
	id          INTEGER PRIMARY KEY,
	ct          TEXT NOT NULL,    -- conntrack id and original tuple, while the entry lives
	slice       TEXT NOT NULL,
	proto       TEXT NOT NULL,
	inbound     INTEGER NOT NULL,
	sliver_addr TEXT NOT NULL,
	sliver_port INTEGER NOT NULL,
	node_addr   TEXT NOT NULL,
	node_port   INTEGER NOT NULL,
	remote_addr TEXT NOT NULL,
	remote_port INTEGER NOT NULL,
	start_ns    INTEGER NOT NULL, -- Unix nanoseconds
	end_ns      INTEGER,          -- NULL while open
	missed      INTEGER NOT NULL DEFAULT 0,
	bytes_out   INTEGER NOT NULL DEFAULT 0,
	packets_out INTEGER NOT NULL DEFAULT 0,
	bytes_in    INTEGER NOT NULL DEFAULT 0,
	packets_in  INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS flows_remote ON flows (remote_addr, start_ns);
CREATE INDEX IF NOT EXISTS flows_ct ON flows (ct) WHERE end_ns IS NULL OR missed;
CREATE INDEX IF NOT EXISTS flows_end ON flows (end_ns);
`

func openFlowDB(path string) (*sql.DB, error) {
	if path == "" || strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("flow log: database path %q is not a plain file path: %w", path, errdefs.ErrInvalid)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("flow log: %w", err)
	}
	q := url.Values{}
	// A log, not a ledger: synchronous(NORMAL) in WAL mode loses at most
	// the last commits on a power cut, never the database.
	for _, p := range []string{"journal_mode(WAL)", "synchronous(NORMAL)", "busy_timeout(10000)"} {
		q.Add("_pragma", p)
	}
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode()+"&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("flow log %s: %w", path, err)
	}
	db.SetMaxOpenConns(1) // the single writer
	if _, err := db.Exec(flowSchema); err != nil {
		db.Close()
		return nil, fmt.Errorf("flow log %s: %w", path, err)
	}
	return db, nil
}

// listener is one subscription to the node's conntrack events.
type listener struct {
	c    *conntrack.Conn
	errc chan error
}

// listen subscribes to NEW and DESTROY events in the node's namespace,
// one decoding worker so that a flow's NEW comes before its DESTROY.
func (fl *FlowLog) listen() (*listener, error) {
	var c *conntrack.Conn
	if err := inNS(fl.n.ns, func() (err error) { c, err = conntrack.Dial(nil); return err }); err != nil {
		return nil, fmt.Errorf("flow log: conntrack: %w", err)
	}
	if err := c.SetReadBuffer(fl.opts.rcvbuf); err != nil {
		fl.log.Warn("event socket buffer", "err", err)
	}
	errc, err := c.Listen(fl.evs, 1, []netfilter.NetlinkGroup{netfilter.GroupCTNew, netfilter.GroupCTDestroy})
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("flow log: conntrack events: %w", err)
	}
	return &listener{c: c, errc: errc}, nil
}

// close closes l's socket and returns the events its worker still
// delivers meanwhile, with those already queued.
func (l *listener) close(evs chan conntrack.Event) []conntrack.Event {
	var out []conntrack.Event
	closed := make(chan struct{})
	go func() { l.c.Close(); close(closed) }()
	for {
		select {
		case ev := <-evs:
			out = append(out, ev)
		case <-l.errc: // a worker must not block on it while Close waits
		case <-closed:
			for {
				select {
				case ev := <-evs:
					out = append(out, ev)
				default:
					return out
				}
			}
		}
	}
}

func (fl *FlowLog) run(ctx context.Context, l *listener) {
	defer close(fl.done)
	defer fl.db.Close()
	every := max(min(fl.opts.retention/4, time.Hour), 10*time.Millisecond)
	expire := time.NewTicker(every)
	defer expire.Stop()
	refresh := time.NewTicker(flowRefresh)
	defer refresh.Stop()
	fl.expire()
	var (
		retry   <-chan time.Time
		backoff = time.Second
	)
	for {
		var errc chan error
		if l != nil {
			errc = l.errc
		}
		select {
		case <-ctx.Done():
			fl.shutdown(l)
			return
		case <-fl.stop:
			fl.shutdown(l)
			return
		case ev := <-fl.evs:
			batch := []conntrack.Event{ev}
		more:
			for len(batch) < 1024 {
				select {
				case ev := <-fl.evs:
					batch = append(batch, ev)
				default:
					break more
				}
			}
			fl.apply(batch)
		case err := <-errc:
			// The library's worker has stopped: subscribe again, then
			// read the table for what the gap hid.
			fl.shutdown(l)
			l = nil
			if errors.Is(err, unix.ENOBUFS) {
				fl.overflows.Add(1)
				fl.log.Warn("conntrack events lost: the event socket overflowed; resyncing from the table", "overflows", fl.overflows.Load())
				retry, backoff = closedTime(), time.Second
			} else {
				fl.log.Error("conntrack events stopped; subscribing again", "err", err, "in", backoff)
				retry = time.After(backoff)
				backoff = min(2*backoff, time.Minute)
			}
		case <-retry:
			retry = nil
			var err error
			if l, err = fl.listen(); err != nil {
				fl.log.Error("flow log: resubscribe", "err", err, "in", backoff)
				retry = time.After(backoff)
				backoff = min(2*backoff, time.Minute)
				continue
			}
			backoff = time.Second
			if err := fl.resync(); err != nil {
				fl.log.Error("flow log: resync", "err", err)
			}
		case <-expire.C:
			fl.expire()
		case <-refresh.C:
			if l != nil {
				if err := fl.resync(); err != nil {
					fl.log.Error("flow log: refresh", "err", err)
				}
			}
		}
	}
}

// shutdown closes l (if any) and records the events it still delivered.
func (fl *FlowLog) shutdown(l *listener) {
	if l != nil {
		fl.apply(l.close(fl.evs))
	}
}

// closedTime is a channel that is ready at once.
func closedTime() <-chan time.Time {
	c := make(chan time.Time, 1)
	c <- time.Time{}
	return c
}

// flowRecord is a flow and the conntrack entry it came from.
type flowRecord struct {
	ct string // the entry's id and original tuple
	Flow
}

// ctKey names conntrack entry f while it lives: its id is unique among
// live entries, its tuple guards against reuse.
func ctKey(f *conntrack.Flow) string {
	o := f.TupleOrig
	return fmt.Sprintf("%d %d %s:%d %s:%d %d", f.ID, o.Proto.Protocol, o.IP.SourceAddress, o.Proto.SourcePort,
		o.IP.DestinationAddress, o.Proto.DestinationPort, o.Proto.ICMPID)
}

// classify attributes f to a slice: outbound when its original source is
// a sliver's address, inbound when its reply comes from one (the DNAT to
// a reserved port). sliverAt names the sliver at an address ("" none).
func classify(f *conntrack.Flow, sliverAt func(netip.Addr) string) (flowRecord, bool) {
	o, r := f.TupleOrig, f.TupleReply
	ap := func(a netip.Addr, p uint16) netip.AddrPort { return netip.AddrPortFrom(a, p) }
	rec := flowRecord{ct: ctKey(f), Flow: Flow{Proto: protoName(o.Proto.Protocol)}}
	var out, in conntrack.Counter
	if s := sliverAt(o.IP.SourceAddress); s != "" {
		rec.Slice = s
		rec.Sliver = ap(o.IP.SourceAddress, o.Proto.SourcePort)
		rec.Node = ap(r.IP.DestinationAddress, r.Proto.DestinationPort)
		rec.Remote = ap(o.IP.DestinationAddress, o.Proto.DestinationPort)
		out, in = f.CountersOrig, f.CountersReply
	} else if s := sliverAt(r.IP.SourceAddress); s != "" {
		rec.Slice, rec.Inbound = s, true
		rec.Sliver = ap(r.IP.SourceAddress, r.Proto.SourcePort)
		rec.Node = ap(o.IP.DestinationAddress, o.Proto.DestinationPort)
		rec.Remote = ap(o.IP.SourceAddress, o.Proto.SourcePort)
		out, in = f.CountersReply, f.CountersOrig
	} else {
		return flowRecord{}, false
	}
	rec.BytesOut, rec.PacketsOut, rec.BytesIn, rec.PacketsIn = out.Bytes, out.Packets, in.Bytes, in.Packets
	rec.Start, rec.End = f.Timestamp.Start, f.Timestamp.Stop
	return rec, true
}

func protoName(p uint8) string {
	switch p {
	case unix.IPPROTO_TCP:
		return "tcp"
	case unix.IPPROTO_UDP:
		return "udp"
	case unix.IPPROTO_ICMP:
		return "icmp"
	}
	return strconv.Itoa(int(p))
}

// sliverAt names the sliver that holds addr now ("" none).
func (n *Net) sliverAt(addr netip.Addr) string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.used[addr]
}

// forgetFlows deletes the node's conntrack entries of a sliver's address
// (Detach should call it): the flow log records their ends now, and a
// sliver that gets the address next cannot inherit an entry, and with it
// a flow of the slice before.
func (n *Net) forgetFlows(addr netip.Addr) error {
	return inNS(n.ns, func() error {
		c, err := conntrack.Dial(nil)
		if err != nil {
			return err
		}
		defer c.Close()
		flows, err := c.Dump(nil)
		if err != nil {
			return err
		}
		var errs []error
		for _, f := range flows {
			if f.TupleOrig.IP.SourceAddress == addr || f.TupleReply.IP.SourceAddress == addr {
				// Gone already (it expired meanwhile) is as good as deleted.
				if err := c.Delete(f); err != nil && !errors.Is(err, unix.ENOENT) {
					errs = append(errs, err)
				}
			}
		}
		return errors.Join(errs...)
	})
}

// apply records a batch of events in one transaction. A NEW adds an open
// flow (unless the log has it already: a resync found it first); a
// DESTROY closes it with the kernel's counters and times, or adds the
// whole flow if its NEW was lost.
func (fl *FlowLog) apply(evs []conntrack.Event) {
	if len(evs) == 0 {
		return
	}
	now := time.Now()
	err := fl.tx(func(tx *sql.Tx) error {
		for _, ev := range evs {
			if ev.Flow == nil {
				continue
			}
			switch ev.Type {
			case conntrack.EventNew:
				rec, ok := classify(ev.Flow, fl.n.sliverAt)
				if !ok {
					continue
				}
				if rec.Start.IsZero() {
					rec.Start = now
				}
				if err := insertOpen(tx, rec, false); err != nil {
					return err
				}
			case conntrack.EventDestroy:
				if err := fl.destroyed(tx, ev.Flow, now); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		fl.log.Error("flow log: record events", "events", len(evs), "err", err)
	}
}

func (fl *FlowLog) destroyed(tx *sql.Tx, f *conntrack.Flow, now time.Time) error {
	end := f.Timestamp.Stop
	if end.IsZero() {
		end = now
	}
	// The row's direction decides which counters are the sliver's.
	var id int64
	var inbound bool
	err := tx.QueryRow(`SELECT id, inbound FROM flows WHERE ct = ? AND (end_ns IS NULL OR missed) ORDER BY id DESC LIMIT 1`, ctKey(f)).Scan(&id, &inbound)
	if errors.Is(err, sql.ErrNoRows) {
		rec, ok := classify(f, fl.n.sliverAt)
		if !ok {
			return nil
		}
		if rec.Start.IsZero() {
			rec.Start = end
		}
		rec.End = end
		return insertRecord(tx, rec)
	}
	if err != nil {
		return err
	}
	out, in := f.CountersOrig, f.CountersReply
	if inbound {
		out, in = in, out
	}
	start := sql.NullInt64{Int64: f.Timestamp.Start.UnixNano(), Valid: !f.Timestamp.Start.IsZero()}
	_, err = tx.Exec(`UPDATE flows SET end_ns = ?, missed = 0, start_ns = coalesce(?, start_ns),
		bytes_out = ?, packets_out = ?, bytes_in = ?, packets_in = ? WHERE id = ?`,
		end.UnixNano(), start, int64(out.Bytes), int64(out.Packets), int64(in.Bytes), int64(in.Packets), id)
	return err
}

// insertOpen adds rec as an open flow unless the log has it open already;
// with refresh, an existing one takes rec's counters.
func insertOpen(tx *sql.Tx, rec flowRecord, refresh bool) error {
	var id int64
	err := tx.QueryRow(`SELECT id FROM flows WHERE ct = ? AND end_ns IS NULL`, rec.ct).Scan(&id)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		rec.End = time.Time{}
		return insertRecord(tx, rec)
	case err != nil:
		return err
	case refresh:
		_, err = tx.Exec(`UPDATE flows SET bytes_out = ?, packets_out = ?, bytes_in = ?, packets_in = ? WHERE id = ?`,
			int64(rec.BytesOut), int64(rec.PacketsOut), int64(rec.BytesIn), int64(rec.PacketsIn), id)
		return err
	}
	return nil
}

func insertRecord(tx *sql.Tx, r flowRecord) error {
	end := sql.NullInt64{Int64: r.End.UnixNano(), Valid: !r.End.IsZero()}
	_, err := tx.Exec(`INSERT INTO flows (ct, slice, proto, inbound, sliver_addr, sliver_port, node_addr, node_port,
		remote_addr, remote_port, start_ns, end_ns, bytes_out, packets_out, bytes_in, packets_in)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		r.ct, r.Slice, r.Proto, r.Inbound, r.Sliver.Addr().String(), r.Sliver.Port(), r.Node.Addr().String(), r.Node.Port(),
		r.Remote.Addr().String(), r.Remote.Port(), r.Start.UnixNano(), end,
		int64(r.BytesOut), int64(r.PacketsOut), int64(r.BytesIn), int64(r.PacketsIn))
	return err
}

// resync brings the log in line with the conntrack table: live flows it
// lacks are added (their counters refreshed if it has them), flows it has
// open that are gone are closed as missed.
func (fl *FlowLog) resync() error {
	var flows []conntrack.Flow
	err := inNS(fl.n.ns, func() error {
		c, err := conntrack.Dial(nil)
		if err != nil {
			return err
		}
		defer c.Close()
		flows, err = c.Dump(nil)
		return err
	})
	if err != nil {
		return fmt.Errorf("flow log: read the conntrack table: %w", err)
	}
	now := time.Now()
	live := map[string]bool{}
	added := 0
	err = fl.tx(func(tx *sql.Tx) error {
		for i := range flows {
			rec, ok := classify(&flows[i], fl.n.sliverAt)
			if !ok {
				continue
			}
			live[rec.ct] = true
			if rec.Start.IsZero() {
				rec.Start = now
			}
			if err := insertOpen(tx, rec, true); err != nil {
				return err
			}
			added++
		}
		rows, err := tx.Query(`SELECT id, ct FROM flows WHERE end_ns IS NULL`)
		if err != nil {
			return err
		}
		var gone []int64
		for rows.Next() {
			var id int64
			var ct string
			if err := rows.Scan(&id, &ct); err != nil {
				rows.Close()
				return err
			}
			if !live[ct] {
				gone = append(gone, id)
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for _, id := range gone {
			if _, err := tx.Exec(`UPDATE flows SET end_ns = ?, missed = 1 WHERE id = ?`, now.UnixNano(), id); err != nil {
				return err
			}
		}
		if len(gone) > 0 {
			fl.log.Info("flows ended while the log was not listening", "flows", len(gone))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("flow log: resync: %w", err)
	}
	fl.log.Debug("flow log resynced", "live", added)
	return nil
}

// expire deletes the flows that ended more than the retention ago.
func (fl *FlowLog) expire() {
	cutoff := time.Now().Add(-fl.opts.retention)
	res, err := fl.db.Exec(`DELETE FROM flows WHERE end_ns < ?`, cutoff.UnixNano())
	if err != nil {
		fl.log.Error("flow log: expire", "err", err)
		return
	}
	if n, _ := res.RowsAffected(); n > 0 {
		fl.log.Debug("flow log: expired", "flows", n)
	}
}

func (fl *FlowLog) tx(fn func(*sql.Tx) error) error {
	tx, err := fl.db.Begin()
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

// QueryFlows reads the flow log at path (read-only; the log may be
// running) for the flows to or from q.Dst, oldest first.
func QueryFlows(ctx context.Context, path string, q FlowQuery) ([]Flow, error) {
	if !q.Dst.IsValid() {
		return nil, fmt.Errorf("query flows: give the remote address to trace: %w", errdefs.ErrInvalid)
	}
	if strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("query flows: database path %q is not a plain file path: %w", path, errdefs.ErrInvalid)
	}
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("no flow log at %s: the node writes it while it serves (plab node serve): %w", path, errdefs.ErrNotFound)
	}
	v := url.Values{}
	v.Set("mode", "ro")
	for _, p := range []string{"query_only(1)", "busy_timeout(10000)"} {
		v.Add("_pragma", p)
	}
	db, err := sql.Open("sqlite", "file:"+path+"?"+v.Encode())
	if err != nil {
		return nil, fmt.Errorf("flow log %s: %w", path, err)
	}
	defer db.Close()
	since := int64(math.MinInt64)
	if !q.Since.IsZero() {
		since = q.Since.UnixNano()
	}
	dst := q.Dst.Unmap().String()
	rows, err := db.QueryContext(ctx, `SELECT slice, proto, inbound, sliver_addr, sliver_port, node_addr, node_port,
		remote_addr, remote_port, start_ns, end_ns, missed, bytes_out, packets_out, bytes_in, packets_in
		FROM flows WHERE remote_addr = ? AND (end_ns IS NULL OR end_ns >= ?) AND (? = 0 OR remote_port = ?)
		ORDER BY start_ns, id`, dst, since, q.Port, q.Port)
	if err != nil {
		return nil, fmt.Errorf("flow log %s: %w", path, err)
	}
	defer rows.Close()
	var out []Flow
	for rows.Next() {
		var (
			f              Flow
			sa, na, ra     string
			sp, np, rp     uint16
			start          int64
			end            sql.NullInt64
			bo, po, bi, pi int64
		)
		if err := rows.Scan(&f.Slice, &f.Proto, &f.Inbound, &sa, &sp, &na, &np, &ra, &rp, &start, &end, &f.Missed, &bo, &po, &bi, &pi); err != nil {
			return nil, fmt.Errorf("flow log %s: %w", path, err)
		}
		f.Sliver = addrPort(sa, sp)
		f.Node = addrPort(na, np)
		f.Remote = addrPort(ra, rp)
		f.Start = time.Unix(0, start).UTC()
		if end.Valid {
			f.End = time.Unix(0, end.Int64).UTC()
		}
		f.BytesOut, f.PacketsOut, f.BytesIn, f.PacketsIn = uint64(bo), uint64(po), uint64(bi), uint64(pi)
		out = append(out, f)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("flow log %s: %w", path, err)
	}
	return out, nil
}

func addrPort(addr string, port uint16) netip.AddrPort {
	a, _ := netip.ParseAddr(addr)
	return netip.AddrPortFrom(a, port)
}
