// Package plab is the root of the plab module: a modern PlanetLab, one
// binary (cmd/plab) that runs the central registry, the nodes and the
// user's command line. This package holds no code; its tests enforce the
// conventions of the whole tree (package documentation, import boundaries).
package plab
