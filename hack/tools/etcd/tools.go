//go:build tools

// Package tools pins the etcd command that hack/provision builds.
package tools

import _ "go.etcd.io/etcd/server/v3"
