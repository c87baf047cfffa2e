// Package atomicfile replaces files whole or not at all, durably: a crash
// leaves the old content or the new, never a mix, and a write that returned
// survives a power cut.
package atomicfile

import (
	"os"
	"path/filepath"
)

// Write replaces path with data and mode: a temporary file in the same
// directory, synced, renamed over path, then the directory synced.
func Write(path string, data []byte, mode os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(mode)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
