package cluster

import (
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-voice/switchboard/testharness"
)

// startEtcd runs a one-member etcd on loopback (random ports, a temporary
// data directory) for the test's life and returns its client endpoint.
func startEtcd(t *testing.T) string {
	ep, _ := startEtcdKillable(t)
	return ep
}

// startEtcdKillable is startEtcd that also returns a function killing etcd.
func startEtcdKillable(t *testing.T) (string, func()) {
	t.Helper()
	bin := testharness.RequireBinary(t, "etcd", "apt-get install etcd-server")
	client, peer := freeTCP(t), freeTCP(t)
	cu := "http://127.0.0.1:" + strconv.Itoa(client)
	pu := "http://127.0.0.1:" + strconv.Itoa(peer)
	dir := t.TempDir()
	cmd := exec.Command(bin, "--name", "test", "--data-dir", dir,
		"--listen-client-urls", cu, "--advertise-client-urls", cu,
		"--listen-peer-urls", pu, "--initial-advertise-peer-urls", pu,
		"--initial-cluster", "test="+pu, "--log-level", "warn")
	log, err := os.Create(dir + "/../etcd.log")
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start etcd: %v", err)
	}
	var once sync.Once
	kill := func() {
		once.Do(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			log.Close()
		})
	}
	t.Cleanup(kill)
	hc := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := hc.Get(cu + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			out, _ := os.ReadFile(log.Name())
			t.Fatalf("etcd not healthy in 15 s: %v\n%s", err, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return "127.0.0.1:" + strconv.Itoa(client), kill
}
