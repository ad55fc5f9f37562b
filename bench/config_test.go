package bench

import (
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		edit func(*Config)
		want string // "" for valid
	}{
		{"defaults", func(*Config) {}, ""},
		{"every source", func(c *Config) { c.Source = "documentdb" }, ""},
		{"unknown source", func(c *Config) { c.Source = "pubsub" }, "--source must be one of"},
		{"no records", func(c *Config) { c.Records = -1 }, "--records"},
		{"tiny records", func(c *Config) { c.RecordSize = 10 }, "--record-size"},
		{"negative rate", func(c *Config) { c.Rate = -5 }, "--rate"},
		{"batch too large", func(c *Config) { c.BatchSize = 10001 }, "--batch-size"},
		{"window in ms", func(c *Config) { c.Window = 500 * time.Millisecond }, "--window must be whole seconds"},
		{"window too long", func(c *Config) { c.Window = 301 * time.Second }, "--window"},
		{"source's window", func(c *Config) { c.Window = -1 }, ""},
		{"parallelization", func(c *Config) { c.ParallelizationFactor = 11 }, "--parallelization-factor"},
		{"partitions", func(c *Config) { c.Partitions = 1001 }, "--partitions"},
		{"partitions of lanes", func(c *Config) { c.Partitions, c.Lanes = 10000, 10000 }, ""},
		{"match share zero", func(c *Config) { c.MatchShare = -0.5 }, "--match-share"},
		{"match share above 1", func(c *Config) { c.MatchShare = 1.5 }, "--match-share"},
		{"compare", func(c *Config) { c.Compare = "benthos" }, "--compare must be raw"},
		{"invoke mode", func(c *Config) { c.InvokeMode = "http" }, "--invoke-mode"},
		{"rounds", func(c *Config) { c.Rounds = 101 }, "--rounds"},
		{"lanes", func(c *Config) { c.Lanes = 100001 }, "--lanes"},
		{"trickle", func(c *Config) { c.Trickle = -1 }, "--trickle"},
		{"binary", func(c *Config) { c.Exe = "" }, "no esmd binary"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Config{Exe: "esmd", Window: -1}
			c.Defaults()
			tt.edit(&c)
			err := c.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("Validate() = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	tests := []struct {
		in                 Config
		partitions, rounds int
	}{
		{Config{}, 8, 1},
		{Config{Source: "kinesis", Compare: "raw"}, 4, 3},
		{Config{Source: "sqs", Rounds: 2}, 1, 2},
	}
	for _, tt := range tests {
		c := tt.in
		c.Defaults()
		if c.Partitions != tt.partitions || c.Rounds != tt.rounds || c.Records != 100000 || c.RecordSize != 1024 || c.BatchSize != 100 || c.MatchShare != 1 {
			t.Errorf("Defaults(%+v) = %+v", tt.in, c)
		}
	}
}

// TestDefaultWindow: a raw loop gets the window esmd runs with when
// --window is not given, the source descriptor's.
func TestDefaultWindow(t *testing.T) {
	for _, src := range Sources {
		want := time.Duration(0)
		switch src {
		case "kafka", "rabbitmq", "activemq", "documentdb":
			want = 500 * time.Millisecond
		}
		if got := defaultWindow(src); got != want {
			t.Errorf("%s: %v, want %v", src, got, want)
		}
	}
}
