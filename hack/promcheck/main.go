// promcheck reads Prometheus text exposition (format 0.0.4) on stdin, parses it with the
// parser Prometheus itself uses (expfmt.TextParser, legacy metric and label names), checks
// that histograms are consistent, and prints "families=N samples=M". It exits 1 with the
// parse error when the text does not parse. Built and run by hack/promcheck.sh.
//
//	-v     list the families (type, series, samples) on stderr
//	-dump  print every sample as the parser understood it, one per line, label values
//	       Go-quoted: name{a="x\n"} 1 (sorted), before the summary line
package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

func main() {
	verbose := flag.Bool("v", false, "list the families on stderr")
	dump := flag.Bool("dump", false, "print every sample as parsed")
	flag.Parse()
	in, err := io.ReadAll(os.Stdin)
	if err != nil {
		fail("reading stdin: %v", err)
	}
	parser := expfmt.NewTextParser(model.LegacyValidation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(in))
	if err != nil {
		fail("parse error: %v", err)
	}
	names := make([]string, 0, len(families))
	for name := range families {
		names = append(names, name)
	}
	sort.Strings(names)
	samples := 0
	for _, name := range names {
		mf := families[name]
		n := 0
		for _, m := range mf.GetMetric() {
			if mf.GetType() == dto.MetricType_HISTOGRAM {
				if err := checkHistogram(name, m); err != nil {
					fail("%v", err)
				}
				n += len(m.GetHistogram().GetBucket()) + 2 // buckets, _sum, _count
			} else {
				n++
			}
		}
		samples += n
		if *dump {
			dumpFamily(mf)
		}
		if *verbose {
			fmt.Fprintf(os.Stderr, "%s %s series=%d samples=%d\n", name, mf.GetType(), len(mf.GetMetric()), n)
		}
	}
	fmt.Printf("families=%d samples=%d\n", len(families), samples)
}

// checkHistogram: cumulative bucket counts never decrease, the last bucket is +Inf, and its
// count equals the _count sample.
func checkHistogram(name string, m *dto.Metric) error {
	h := m.GetHistogram()
	b := h.GetBucket()
	if len(b) == 0 {
		return fmt.Errorf("histogram %s%v has no buckets", name, m.GetLabel())
	}
	for i := 1; i < len(b); i++ {
		if b[i].GetUpperBound() <= b[i-1].GetUpperBound() {
			return fmt.Errorf("histogram %s%v: bucket bounds not ascending", name, m.GetLabel())
		}
		if b[i].GetCumulativeCount() < b[i-1].GetCumulativeCount() {
			return fmt.Errorf("histogram %s%v: bucket counts not cumulative", name, m.GetLabel())
		}
	}
	last := b[len(b)-1]
	if !math.IsInf(last.GetUpperBound(), 1) {
		return fmt.Errorf("histogram %s%v: the last bucket is not le=\"+Inf\"", name, m.GetLabel())
	}
	if last.GetCumulativeCount() != h.GetSampleCount() {
		return fmt.Errorf("histogram %s%v: +Inf bucket %d != _count %d", name, m.GetLabel(),
			last.GetCumulativeCount(), h.GetSampleCount())
	}
	return nil
}

// dumpFamily prints the samples of one family, sorted, as name{labels} value.
func dumpFamily(mf *dto.MetricFamily) {
	var lines []string
	name := mf.GetName()
	for _, m := range mf.GetMetric() {
		switch mf.GetType() {
		case dto.MetricType_COUNTER:
			lines = append(lines, sample(name, m.GetLabel(), "", m.GetCounter().GetValue()))
		case dto.MetricType_GAUGE:
			lines = append(lines, sample(name, m.GetLabel(), "", m.GetGauge().GetValue()))
		case dto.MetricType_UNTYPED:
			lines = append(lines, sample(name, m.GetLabel(), "", m.GetUntyped().GetValue()))
		case dto.MetricType_HISTOGRAM:
			h := m.GetHistogram()
			for _, b := range h.GetBucket() {
				le := `le=` + strconv.Quote(formatFloat(b.GetUpperBound()))
				lines = append(lines, sample(name+"_bucket", m.GetLabel(), le, float64(b.GetCumulativeCount())))
			}
			lines = append(lines, sample(name+"_sum", m.GetLabel(), "", h.GetSampleSum()))
			lines = append(lines, sample(name+"_count", m.GetLabel(), "", float64(h.GetSampleCount())))
		}
	}
	sort.Strings(lines)
	for _, l := range lines {
		fmt.Println(l)
	}
}

func sample(name string, labels []*dto.LabelPair, extra string, v float64) string {
	var parts []string
	for _, l := range labels {
		parts = append(parts, l.GetName()+"="+strconv.Quote(l.GetValue()))
	}
	if extra != "" {
		parts = append(parts, extra)
	}
	if len(parts) > 0 {
		name += "{" + strings.Join(parts, ",") + "}"
	}
	return name + " " + formatFloat(v)
}

func formatFloat(v float64) string {
	switch {
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	case math.IsNaN(v):
		return "NaN"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "promcheck: "+format+"\n", args...)
	os.Exit(1)
}
