# gnuplot script: one picture per zone of the streaming part.  Called with
#   gnuplot -e "zone='airport'; dir='OUT'; min_grade=0.5" demo/plot_stream.gp
# Reads, in OUT: ZONE.stream.csv (time, rides, the detector's score and
# grade), ZONE.spans.csv (start and end of each injected anomaly, rides at
# its start, the top of the shading), ZONE.webhook.csv and ZONE.sns.csv
# (time, rides, grade of each alert the stand-in received).
set terminal pngcairo size 1400,650 font ",10"
set output dir.'/'.zone.'.stream.png'
set datafile separator ','
set xdata time
set timefmt '%Y-%m-%d %H:%M'
set format x '%b %d'
set title 'anomaly demo, streamed: rides per 10 minutes in zone '.zone.', graded by a detector as they were committed, and the alerts received'
set ylabel 'rides per 10 minutes'
set y2label 'anomaly grade (detector)'
set y2tics 0, 0.25, 1
set ytics nomirror
set yrange [0:*]
set y2range [0:1.6]
set autoscale xfix
set key outside bottom center horizontal noenhanced
set grid xtics
set style fill transparent solid 0.18 noborder
set arrow from graph 0, second min_grade to graph 1, second min_grade nohead dt 2 lc rgb '#cc6677'
plot dir.'/'.zone.'.spans.csv' using 1:(0):1:2:(0):4 with boxxyerror lc rgb '#228833' title 'injected anomaly', \
	 dir.'/'.zone.'.stream.csv' using 1:2 with lines lc rgb '#4477aa' title 'rides', \
	 '' using 1:($4 > 0 ? $4 : NaN) axes x1y2 with impulses lw 2 lc rgb '#ee7733' title 'anomaly grade', \
	 NaN with lines dt 2 lc rgb '#cc6677' title sprintf('alert rule: min_grade %.2g', min_grade), \
	 dir.'/'.zone.'.spans.csv' using 1:3 with points pt 6 ps 2.5 lc rgb '#228833' notitle, \
	 dir.'/'.zone.'.webhook.csv' using 1:2 with points pt 7 ps 1.3 lc rgb '#ee3333' title 'alert received by the webhook', \
	 dir.'/'.zone.'.sns.csv' using 1:3 axes x1y2 with points pt 9 ps 1.5 lc rgb '#aa3377' title 'alert received by SNS (at its grade)'
