package vsh

import (
	"fmt"
	"io"
	"strings"

	"github.com/pkg/sftp"
)

// HelperMain is the file-transfer helper the gateway runs inside a sliver,
// as the session's user, with the session's stdin, stdout and stderr: the
// plab binary itself (`plab vsh-helper ARGS...`), so that scp and sftp work
// whatever the image holds. args are what follows vsh-helper:
//
//	sftp-server      the SFTP subsystem, relative paths from the working directory
//	scp [-dpqrv] [--] -t TARGET
//	scp [-dpqrv] [--] -f FILE...
//	                 the legacy SCP protocol, as OpenSSH's scp -O expects of a remote scp
//
// It returns the exit status: 0, or 1 after any error (which scp reports to
// its peer in the protocol, as OpenSSH's remote scp does).
func HelperMain(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: vsh-helper sftp-server | vsh-helper scp [-dpqrv] [--] -t target | -f file...")
		return 1
	}
	switch args[0] {
	case "sftp-server":
		return sftpServer(args[1:], stdin, stdout, stderr)
	case "scp":
		return scpMain(args[1:], stdin, stdout, stderr)
	}
	fmt.Fprintf(stderr, "vsh-helper: unknown mode %q; try sftp-server or scp\n", args[0])
	return 1
}

// sftpServer serves SFTP on stdin and stdout until the client hangs up.
func sftpServer(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) != 0 {
		fmt.Fprintf(stderr, "vsh-helper sftp-server: takes no arguments, got %q\n", args)
		return 1
	}
	shim := newLimitsShim(stdin, stdout)
	srv, err := sftp.NewServer(shim, sftp.WithMaxTxPacket(sftpMaxRead))
	if err != nil {
		fmt.Fprintf(stderr, "vsh-helper sftp-server: %v\n", err)
		return 1
	}
	if err := srv.Serve(); err != nil {
		fmt.Fprintf(stderr, "vsh-helper sftp-server: %v\n", err)
		return 1
	}
	return 0
}

// HelperCommand says whether the command line of an SSH exec request is a
// legacy scp the helper serves (`scp -t -- /tmp/x`, `scp -r -f dir`), and
// returns HelperMain's arguments for it. The line is split into words as a
// shell would, for what needs no shell: plain words, '…', "…" without
// expansions, and backslash escapes; a word's leading ~ or ~/ becomes . or
// ./, which is the home directory as long as the gateway starts the helper
// there. Anything a shell would do more with (operators, redirections,
// variables, globs, ~user, comments) is not ok: the gateway hands such a
// line to the sliver's shell. OpenSSH's scp -O sends the remote path as
// the user typed it, unquoted: the user quotes for the remote shell
// (host:'"a b"' or host:'a\ b').
func HelperCommand(cmd string) (args []string, ok bool) {
	words, ok := shellWords(cmd)
	if !ok || len(words) < 2 || words[0] != "scp" {
		return nil, false
	}
	if _, err := parseSCPArgs(words[1:]); err != nil {
		return nil, false
	}
	return append([]string{"scp"}, words[1:]...), true
}

// shellWords splits s into words as a POSIX shell does, if the shell
// would do nothing else to it.
func shellWords(s string) ([]string, bool) {
	if strings.ContainsAny(s, "\n\x00") {
		return nil, false
	}
	var words []string
	var w strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == ' ' || c == '\t':
			if inWord {
				words = append(words, w.String())
				w.Reset()
				inWord = false
			}
		case c == '\'':
			end := strings.IndexByte(s[i+1:], '\'')
			if end < 0 {
				return nil, false
			}
			w.WriteString(s[i+1 : i+1+end])
			i += 1 + end
			inWord = true
		case c == '"':
			for i++; ; i++ {
				if i == len(s) {
					return nil, false
				}
				c := s[i]
				if c == '"' {
					break
				}
				if c == '$' || c == '`' {
					return nil, false
				}
				if c == '\\' && i+1 < len(s) && strings.IndexByte("$`\"\\", s[i+1]) >= 0 {
					i++
					c = s[i]
				}
				w.WriteByte(c)
			}
			inWord = true
		case c == '\\':
			if i+1 == len(s) {
				return nil, false
			}
			i++
			w.WriteByte(s[i])
			inWord = true
		case c == '~' && !inWord && (i+1 == len(s) || strings.IndexByte("/ \t", s[i+1]) >= 0):
			// ~ and ~/…: the home directory, which is the helper's
			// working directory (OpenSSH's scp in SFTP mode assumes the
			// same).
			w.WriteByte('.')
			inWord = true
		case c == '~':
			// Other tilde expansions: ~user at a word's start, or after =
			// or : (bash expands assignment-like arguments).
			if !inWord || s[i-1] == '=' || s[i-1] == ':' {
				return nil, false
			}
			w.WriteByte(c)
		case plainShellByte(c):
			w.WriteByte(c)
			inWord = true
		default:
			return nil, false
		}
	}
	if inWord {
		words = append(words, w.String())
	}
	return words, true
}

// plainShellByte says whether c means itself to a shell anywhere in a word
// (bytes of UTF-8 sequences included).
func plainShellByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		strings.IndexByte("-_./,:+=@%", c) >= 0 || c >= 0x80
}
