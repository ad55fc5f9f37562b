package kafka

import (
	"context"
	"fmt"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/esmd/esmd/esm"
	"github.com/esmd/esmd/source"
)

// Rewind commits, for every partition of the mapping's topics, the offset
// its consumer group resumes at (esmd replay): the log start offset
// (TRIM_HORIZON), the end offset (LATEST), or the first offset whose
// record timestamp is at or after the timestamp (Kafka's ListOffsets by
// time; a partition with no such record resumes at its end). The mapping's
// poller must be stopped, so that the group has no member: Kafka refuses
// an offset commit from outside a group that has members.
func Rewind(ctx context.Context, env *source.Env, m *esm.Mapping, to esm.Position) error {
	cfg, err := configFor(ctx, env, m)
	if err != nil {
		return err
	}
	cl, err := NewProducer(ctx, cfg)
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	var listed kadm.ListedOffsets
	switch to.Type {
	case esm.ReplayTrimHorizon:
		listed, err = adm.ListStartOffsets(ctx, cfg.Topics...)
	case esm.ReplayLatest:
		listed, err = adm.ListEndOffsets(ctx, cfg.Topics...)
	default:
		listed, err = adm.ListOffsetsAfterMilli(ctx, to.Timestamp.UnixMilli(), cfg.Topics...)
	}
	if err == nil {
		err = listed.Error()
	}
	if err != nil {
		return fmt.Errorf("kafka: list offsets of %v: %w", cfg.Topics, err)
	}
	offsets := listed.Offsets()
	// The commit carries no timestamps or leader epochs of the listing:
	// only where to resume.
	offsets.Each(func(o kadm.Offset) {
		offsets.Add(kadm.Offset{Topic: o.Topic, Partition: o.Partition, At: o.At, LeaderEpoch: -1})
	})
	resp, err := adm.CommitOffsets(ctx, cfg.Group, offsets)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		return fmt.Errorf("kafka: commit the offsets of group %s: %w", cfg.Group, err)
	}
	return nil
}
