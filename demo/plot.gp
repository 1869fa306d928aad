# gnuplot script: one picture per zone.  Called with
#   gnuplot -e "zone='airport'; dir='OUT'" demo/plot.gp
set terminal pngcairo size 1400,600 font ",10"
set output dir.'/'.zone.'.png'
set datafile separator ','
set xdata time
set timefmt '%Y-%m-%d %H:%M'
set format x '%b %d'
set title 'anomaly demo: rides per 10 minutes in zone '.zone
set ylabel 'rides'
set y2label 'anomaly score'
set y2tics
set ytics nomirror
set key top left
set grid xtics
plot dir.'/'.zone.'.series.csv' using 1:2 with lines lc rgb '#4477aa' title 'rides', \
	 '' using 1:3 axes x1y2 with lines lc rgb '#bbbbbb' title 'anomaly score', \
	 dir.'/'.zone.'.injected.csv' using 1:2 with points pt 6 ps 2.5 lc rgb '#228833' title 'injected anomaly', \
	 dir.'/'.zone.'.alerts.csv' using 1:2 with points pt 7 ps 1.2 lc rgb '#ee3333' title 'alert'
