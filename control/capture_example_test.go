package control_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"time"

	"github.com/google/gopacket/pcapgo"

	"github.com/xlb-dev/xlb/control"
	"github.com/xlb-dev/xlb/dataplane"
)

// Capture what a running xlb forwards for one service into a pcapng file, as `xlb ctl
// capture --service web --count 100 -w web.pcapng` does.
func ExampleClient_Capture() {
	cl := &control.Client{Base: "http://127.0.0.1:9440"}
	f, err := os.Create("web.pcapng")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer f.Close()
	pw, err := control.NewPcapngWriter(f)
	if err != nil {
		fmt.Println(err)
		return
	}
	start := time.Now()
	sum, err := cl.Capture(context.Background(), control.CaptureRequest{Service: "web", Count: 100}, pw.Write)
	if err != nil {
		fmt.Println(err)
		return
	}
	_ = pw.WriteLost(start, time.Now(), sum) // and flush
	fmt.Printf("%d records, %d did not fit in the rings\n", sum.Records, sum.Lost)
}

// A PcapngWriter puts received, sent and dropped frames on three interfaces of one pcapng
// file; a dropped frame carries its reason as the packet's comment.
func ExamplePcapngWriter() {
	var file bytes.Buffer
	pw, err := control.NewPcapngWriter(&file)
	if err != nil {
		panic(err)
	}
	frame := make([]byte, 60)
	at := time.Unix(1700000000, 0)
	for _, p := range []control.CapturedPacket{
		{Time: at, Dir: dataplane.CaptureReceived, WireLen: 60, Data: frame},
		{Time: at, Dir: dataplane.CaptureDropped, WireLen: 60, Data: frame, Reason: "no_backend"},
	} {
		if err := pw.Write(&p); err != nil {
			panic(err)
		}
	}
	if err := pw.Flush(); err != nil {
		panic(err)
	}
	r, err := pcapgo.NewNgReader(&file, pcapgo.DefaultNgReaderOptions)
	if err != nil {
		panic(err)
	}
	for {
		_, ci, err := r.ReadPacketData()
		if err != nil {
			break
		}
		in, _ := r.Interface(ci.InterfaceIndex)
		fmt.Println(in.Name, ci.Length)
	}
	// Output:
	// xlb-received 60
	// xlb-dropped 60
}
