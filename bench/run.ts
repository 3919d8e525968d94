import { bestModelBench } from './best-model.ts';
import { calibrateBench } from './calibrate.ts';
import { confidenceIngestBench, confidenceQueryBench } from './confidence.ts';
import { fineTuneDatasetBench } from './fine-tuning.ts';
import { modelSelectionBench } from './model-selection.ts';
import { retagEnqueueBench } from './retag-enqueue.ts';
import { analyzeErrorsBench, feedbackIngestBench } from './response-quality.ts';
import { retagBench, retagScaleBench } from './retag.ts';

/** `npm run bench` runs every benchmark; `npm run bench -- <name>` runs one. */
const BENCHMARKS: Record<string, () => Promise<void>> = {
  retag: () => retagBench(),
  'retag-scale': () => retagScaleBench(),
  'retag-enqueue': () => retagEnqueueBench(),
  calibrate: () => calibrateBench(),
  'best-model': () => bestModelBench(),
  'feedback-ingest': () => feedbackIngestBench(),
  'analyze-errors': () => analyzeErrorsBench(),
  'fine-tune-dataset': () => fineTuneDatasetBench(),
  'confidence-ingest': () => confidenceIngestBench(),
  // One seed, two lines: confidence-trends and confidence-dashboard.
  'confidence-query': () => confidenceQueryBench(),
  // Two lines: model-selection-ingest and model-selection-calibrate.
  'model-selection': () => modelSelectionBench(),
};

const wanted = process.argv.slice(2);
const unknown = wanted.filter((name) => !(name in BENCHMARKS));
if (unknown.length > 0) {
  console.error(`unknown benchmark(s): ${unknown.join(', ')}; known: ${Object.keys(BENCHMARKS).join(', ')}`);
  process.exit(2);
}
for (const name of wanted.length > 0 ? wanted : Object.keys(BENCHMARKS)) await BENCHMARKS[name]!();
process.exit(0);
