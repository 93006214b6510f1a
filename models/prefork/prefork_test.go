package prefork

import (
	"bufio"
	"context"
	"net"
	"os"
	"testing"
	"time"

	"github.com/sockbench/sockbench/models"
	"github.com/sockbench/sockbench/protocol"
)

func TestMain(m *testing.M) {
	models.MaybeRunChild()
	os.Exit(m.Run())
}

func TestQuickTCP(t *testing.T) {
	srv, err := models.New("prefork", models.Config{Net: "tcp", Addr: "127.0.0.1:0", Mode: protocol.Upper, Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("hello\n"))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || line != "HELLO\n" {
		t.Fatalf("got %q %v", line, err)
	}
	c.Close()
	t.Log(srv.Stats())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	t.Log(srv.Stats())
}
