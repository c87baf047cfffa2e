package vsh

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"sync"
)

// OpenSSH's SFTP client moves 32 KiB per request unless the server
// announces larger limits with the limits@openssh.com extension (then 255
// KiB, eight times fewer round trips). pkg/sftp does not know it, so a shim
// on the helper's stdin and stdout adds it: it appends the extension to the
// server's version packet and answers the limits request itself.
const (
	fxpVersion       = 2
	fxpExtended      = 200
	fxpExtendedReply = 201
	// sftpMaxRead is the read and write length announced and served, as
	// OpenSSH's sftp-server: its 256 KiB message bound less 1 KiB.
	sftpMaxRead = 256<<10 - 1024
	// sftpMaxPacket bounds a packet from the client (pkg/sftp's own bound).
	sftpMaxPacket = 256 << 10
)

// limitsShim is the SFTP stream between the client (in, out) and the
// server (its Read and Write).
type limitsShim struct {
	in  *bufio.Reader
	pr  *io.PipeReader
	pw  *io.PipeWriter
	mu  sync.Mutex // out, and where it is in the server's packets
	out io.Writer

	head    []byte // the server's bytes of a packet header not yet complete
	left    int    // bytes of the current server packet still to pass
	version bool   // the version packet went out (with the extension)
	pending [][]byte
}

func newLimitsShim(in io.Reader, out io.Writer) *limitsShim {
	pr, pw := io.Pipe()
	s := &limitsShim{in: bufio.NewReaderSize(in, 64<<10), pr: pr, pw: pw, out: out}
	go s.pump()
	return s
}

// pump passes the client's packets to the server, answering limits
// requests itself.
func (s *limitsShim) pump() {
	var hdr [4]byte
	for {
		if _, err := io.ReadFull(s.in, hdr[:]); err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) {
				err = io.ErrUnexpectedEOF
			}
			s.pw.CloseWithError(err)
			return
		}
		n := binary.BigEndian.Uint32(hdr[:])
		if n == 0 || n > sftpMaxPacket {
			// Let the server see it and refuse it as it would.
			_, _ = s.pw.Write(hdr[:])
			_, _ = io.Copy(s.pw, s.in)
			s.pw.Close()
			return
		}
		body := make([]byte, n)
		if _, err := io.ReadFull(s.in, body); err != nil {
			s.pw.CloseWithError(io.ErrUnexpectedEOF)
			return
		}
		if id, ok := limitsRequest(body); ok {
			s.inject(limitsReply(id))
			continue
		}
		if _, err := s.pw.Write(append(hdr[:], body...)); err != nil {
			return
		}
	}
}

// limitsRequest says whether body is a limits@openssh.com request, and its
// id.
func limitsRequest(body []byte) (uint32, bool) {
	if len(body) < 9 || body[0] != fxpExtended {
		return 0, false
	}
	id := binary.BigEndian.Uint32(body[1:])
	name, _, ok := sshString(body[5:])
	return id, ok && name == "limits@openssh.com"
}

// limitsReply is the extended reply to limits request id: the largest
// packet, read and write, and no bound on open handles.
func limitsReply(id uint32) []byte {
	p := binary.BigEndian.AppendUint32(nil, 0)
	p = append(p, fxpExtendedReply)
	p = binary.BigEndian.AppendUint32(p, id)
	for _, v := range []uint64{sftpMaxPacket, sftpMaxRead, sftpMaxRead, 0} {
		p = binary.BigEndian.AppendUint64(p, v)
	}
	binary.BigEndian.PutUint32(p, uint32(len(p)-4))
	return p
}

// inject sends a packet of the shim's own between the server's packets.
func (s *limitsShim) inject(p []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.left == 0 && len(s.head) == 0 && s.version {
		_, _ = s.out.Write(p)
		return
	}
	s.pending = append(s.pending, p)
}

// Read is the server's input.
func (s *limitsShim) Read(b []byte) (int, error) { return s.pr.Read(b) }

// Write is the server's output: passed on packet by packet, the version
// packet with the extension added, and the shim's own packets at packet
// boundaries.
func (s *limitsShim) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	total := len(b)
	for len(b) > 0 {
		if s.left == 0 {
			// A header: its length, and for the first packet the whole
			// packet, which is the version packet.
			need := 4
			if !s.version {
				if len(s.head) >= 4 {
					need = 4 + int(binary.BigEndian.Uint32(s.head))
				}
			}
			take := min(need-len(s.head), len(b))
			s.head = append(s.head, b[:take]...)
			b = b[take:]
			if len(s.head) < need || (!s.version && need == 4) {
				continue
			}
			if !s.version {
				if err := s.writeVersion(); err != nil {
					return 0, err
				}
				continue
			}
			s.left = int(binary.BigEndian.Uint32(s.head))
			if _, err := s.out.Write(s.head); err != nil {
				return 0, err
			}
			s.head = s.head[:0]
			if s.left == 0 {
				s.flushPending()
			}
			continue
		}
		take := min(s.left, len(b))
		if _, err := s.out.Write(b[:take]); err != nil {
			return 0, err
		}
		s.left -= take
		b = b[take:]
		if s.left == 0 {
			s.flushPending()
		}
	}
	return total, nil
}

// writeVersion sends the server's first packet (s.head), adding the limits
// extension when it is the version packet.
func (s *limitsShim) writeVersion() error {
	p := s.head
	if len(p) > 4 && p[4] == fxpVersion {
		p = appendSSHString(appendSSHString(p, "limits@openssh.com"), "1")
		binary.BigEndian.PutUint32(p, uint32(len(p)-4))
	}
	s.head, s.version = nil, true
	if _, err := s.out.Write(p); err != nil {
		return err
	}
	s.flushPending()
	return nil
}

func (s *limitsShim) flushPending() {
	for _, p := range s.pending {
		_, _ = s.out.Write(p)
	}
	s.pending = nil
}

// Close ends both directions.
func (s *limitsShim) Close() error {
	s.pr.Close()
	if c, ok := s.out.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

func appendSSHString(p []byte, v string) []byte {
	p = binary.BigEndian.AppendUint32(p, uint32(len(v)))
	return append(p, v...)
}
