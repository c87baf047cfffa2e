//go:build linux

package vnet

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestMain lets the test binary run inside a sliver as a helper that sends
// raw packets or captures them: PLAB_VNET_HELPER names the job.
func TestMain(m *testing.M) {
	if job := os.Getenv("PLAB_VNET_HELPER"); job != "" {
		if err := helper(job, os.Args[1:]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func helper(job string, args []string) error {
	switch job {
	case "spoof", "options": // SRC DST PORT COUNT: UDP packets from a forged source, or carrying an IP option (NOPs)
		if len(args) != 4 {
			return fmt.Errorf("%s SRC DST PORT COUNT", job)
		}
		src, dst := netip.MustParseAddr(args[0]), netip.MustParseAddr(args[1])
		port, _ := strconv.Atoi(args[2])
		count, _ := strconv.Atoi(args[3])
		pkt := udpPacket(src, dst, 40000, uint16(port), []byte("spoofed"))
		if job == "options" {
			plain := udpPacket(src, dst, 40001, uint16(port), []byte("options"))
			// Insert four NOP option bytes after the 20-byte header: ihl 6.
			pkt = append(append(append([]byte{}, plain[:20]...), 1, 1, 1, 1), plain[20:]...)
			pkt[0] = 0x46
			binary.BigEndian.PutUint16(pkt[2:], uint16(len(pkt)))
		}
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW)
		if err != nil {
			return fmt.Errorf("raw socket: %w", err)
		}
		defer unix.Close(fd)
		to := &unix.SockaddrInet4{Addr: dst.As4()}
		for range count {
			if err := unix.Sendto(fd, pkt, 0, to); err != nil {
				return fmt.Errorf("send: %w", err)
			}
		}
		fmt.Println("sent", count)
		return nil
	case "echo": // DST COUNT: ICMP echo requests as fast as possible; print the replies
		dst := netip.MustParseAddr(args[0])
		count, _ := strconv.Atoi(args[1])
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_ICMP)
		if err != nil {
			return fmt.Errorf("icmp socket: %w", err)
		}
		defer unix.Close(fd)
		to := &unix.SockaddrInet4{Addr: dst.As4()}
		for i := range count {
			req := []byte{8, 0, 0, 0, 0x12, 0x34, byte(i >> 8), byte(i)}
			cs := icmpChecksum(req)
			req[2], req[3] = byte(cs>>8), byte(cs)
			if err := unix.Sendto(fd, req, 0, to); err != nil {
				return fmt.Errorf("send: %w", err)
			}
		}
		tv := unix.NsecToTimeval(int64(100 * time.Millisecond))
		unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
		replies := 0
		buf := make([]byte, 1500)
		for end := time.Now().Add(time.Second); time.Now().Before(end); {
			n, _, err := unix.Recvfrom(fd, buf, 0)
			if err == nil && n >= 28 && buf[20] == 0 { // echo reply
				replies++
			}
		}
		fmt.Println("replies", replies)
		return nil
	case "capture": // MILLIS: count packets on every interface, print their addresses
		ms, _ := strconv.Atoi(args[0])
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM, int(htons(unix.ETH_P_IP)))
		if err != nil {
			return fmt.Errorf("packet socket: %w", err)
		}
		defer unix.Close(fd)
		tv := unix.NsecToTimeval(int64(50 * time.Millisecond))
		unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
		fmt.Println("capturing")
		buf := make([]byte, 65536)
		for end := time.Now().Add(time.Duration(ms) * time.Millisecond); time.Now().Before(end); {
			n, _, err := unix.Recvfrom(fd, buf, 0)
			if err != nil || n < 20 {
				continue
			}
			fmt.Printf("packet %s > %s\n", net.IP(buf[12:16]), net.IP(buf[16:20]))
		}
		return nil
	}
	return fmt.Errorf("unknown helper job %q", job)
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// udpPacket builds an IPv4 UDP packet (the kernel fills the IP checksum
// and the id for a raw socket; the UDP checksum is left zero).
func udpPacket(src, dst netip.Addr, sport, dport uint16, payload []byte) []byte {
	p := make([]byte, 28+len(payload))
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
	p[8] = 64
	p[9] = unix.IPPROTO_UDP
	s, d := src.As4(), dst.As4()
	copy(p[12:16], s[:])
	copy(p[16:20], d[:])
	binary.BigEndian.PutUint16(p[20:], sport)
	binary.BigEndian.PutUint16(p[22:], dport)
	binary.BigEndian.PutUint16(p[24:], uint16(8+len(payload)))
	copy(p[28:], payload)
	return p
}

func icmpChecksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}
