// src/report owns `cnnf report`: reading/validating results files, the HTML + Markdown report
// (vega-lite charts rendered to SVG/PNG, tables, confusion heatmaps, loss curves, provenance).
export { writeReport, renderReport, ASSETS_DIR, type ReportOptions, type ReportOutput, type RenderedReport } from './report.js';
export { readResultsFile, validateResults } from './results-file.js';
export { readTrainingLog, parseTrainingLog, movingAverage, TRAINLOG_COLUMNS, type TrainingLog, type TrainLogRow } from './trainlog.js';
export { escapeHtml, escapeXml, escapeMarkdown, cleanText, slugify } from './escape.js';
export { renderVegaLite, svgToPng } from './charts.js';
