package keepalived

// The output's shape: xlb's configuration schema as YAML, written from these plain structs
// (only what a translation can fill; field names are the configuration's).

type outConfig struct {
	Interfaces []outIface     `yaml:"interfaces"`
	Services   []*outService  `yaml:"services,omitempty"`
	VRRP       *outVRRP       `yaml:"vrrp,omitempty"`
	Instances  []*outVRRP     `yaml:"vrrp_instances,omitempty"`
	SyncGroups []outSyncGroup `yaml:"vrrp_sync_groups,omitempty"`
	Scripts    []*outScript   `yaml:"vrrp_scripts,omitempty"`
}

type outIface struct {
	Name string `yaml:"name"`
}

type outService struct {
	Name         string       `yaml:"name"`
	VIP          string       `yaml:"vip"`
	Port         uint16       `yaml:"port"`
	Protocol     string       `yaml:"protocol"`
	Method       string       `yaml:"method"`
	Scheduler    string       `yaml:"scheduler"`
	TunnelSource string       `yaml:"tunnel_source,omitempty"`
	Backends     []outBackend `yaml:"backends"`
	Fallback     []outBackend `yaml:"fallback,omitempty"`
	Health       *outHealth   `yaml:"health,omitempty"`
	Persistence  *outPersist  `yaml:"persistence,omitempty"`
	OnePacket    bool         `yaml:"one_packet,omitempty"`
}

// outPersist is a persistence block (persistence_timeout, persistence_granularity).
type outPersist struct {
	Timeout string `yaml:"timeout"`
	Prefix  int    `yaml:"prefix,omitempty"`
}

type outBackend struct {
	Name    string     `yaml:"name,omitempty"`
	Address string     `yaml:"address"`
	Port    uint16     `yaml:"port,omitempty"`
	Weight  uint32     `yaml:"weight"`
	Health  *outHealth `yaml:"health,omitempty"`
}

// outHealth is a health block: one check, or Checks (each inheriting the timing).
type outHealth struct {
	Kind               string       `yaml:"kind,omitempty"`
	Port               uint16       `yaml:"port,omitempty"`
	Path               string       `yaml:"path,omitempty"`
	Host               string       `yaml:"host,omitempty"`
	ExpectStatus       int          `yaml:"expect_status,omitempty"`
	ExpectBody         string       `yaml:"expect_body,omitempty"`
	InsecureSkipVerify bool         `yaml:"insecure_skip_verify,omitempty"`
	ServerName         string       `yaml:"server_name,omitempty"`
	Command            []string     `yaml:"command,omitempty"`
	User               string       `yaml:"user,omitempty"`
	DynamicWeight      bool         `yaml:"dynamic_weight,omitempty"`
	Query              string       `yaml:"query,omitempty"`
	QueryType          string       `yaml:"query_type,omitempty"`
	Helo               string       `yaml:"helo,omitempty"`
	Interval           string       `yaml:"interval,omitempty"`
	Timeout            string       `yaml:"timeout,omitempty"`
	Rise               int          `yaml:"rise,omitempty"`
	Fall               int          `yaml:"fall,omitempty"`
	Checks             []*outHealth `yaml:"checks,omitempty"`
}

type outVRRP struct {
	Name            string     `yaml:"name,omitempty"`
	Interface       string     `yaml:"interface"`
	VirtualRouterID uint8      `yaml:"virtual_router_id"`
	Priority        uint8      `yaml:"priority"`
	AdvertInterval  string     `yaml:"advert_interval,omitempty"`
	Preempt         *bool      `yaml:"preempt,omitempty"`
	PreemptDelay    string     `yaml:"preempt_delay,omitempty"`
	UnicastPeers    []string   `yaml:"unicast_peers,omitempty"`
	SourceAddress   string     `yaml:"source_address,omitempty"`
	VIPs            []string   `yaml:"vips"`
	GARPRepeat      int        `yaml:"garp_repeat,omitempty"`
	GARPInterval    string     `yaml:"garp_interval,omitempty"`
	Notify          *outNotify `yaml:"notify,omitempty"`
	TrackScripts    []outTrack `yaml:"track_scripts,omitempty"`
	TrackInterfaces []outTrack `yaml:"track_interfaces,omitempty"`

	node *Node // where it came from, for notes
}

type outNotify struct {
	Master []string `yaml:"master,omitempty"`
	Backup []string `yaml:"backup,omitempty"`
	Fault  []string `yaml:"fault,omitempty"`
	Stop   []string `yaml:"stop,omitempty"`
	Any    []string `yaml:"any,omitempty"`
	User   string   `yaml:"user,omitempty"`
}

// outTrack is a tracked script or interface: its weight lowers the priority while it fails;
// no weight (0) puts the instance in fault.
type outTrack struct {
	Name   string `yaml:"name"`
	Weight int    `yaml:"weight,omitempty"`
}

type outSyncGroup struct {
	Name      string     `yaml:"name"`
	Instances []string   `yaml:"instances"`
	Notify    *outNotify `yaml:"notify,omitempty"`
}

type outScript struct {
	Name     string   `yaml:"name"`
	Command  []string `yaml:"command"`
	Interval string   `yaml:"interval,omitempty"`
	Timeout  string   `yaml:"timeout,omitempty"`
	Weight   int      `yaml:"weight,omitempty"`
	Rise     int      `yaml:"rise,omitempty"`
	Fall     int      `yaml:"fall,omitempty"`
	User     string   `yaml:"user,omitempty"`
}
