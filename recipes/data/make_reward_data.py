"""Generate ``helpfulness_ranked.jsonl``: a small, synthetic, ranked "helpfulness" data set for reward models.

Every group is one user question with K=4 completions and gold ranks (0 = best):

0. helpful: on-topic, specific (concrete tips for the question asked) and polite;
1. vague: on-topic but short and unspecific;
2. off-topic: a polite, specific answer to a question from a *different* topic;
3. rude: a dismissive or insulting refusal (sometimes naming the topic, so topic overlap alone is not enough).

Length does not give the order away (helpful and off-topic answers are both long, vague and rude ones both short),
and each level is drawn from several templates so no single token separates them. Topics are held out: the test
split uses topics that never appear in train, so held-out accuracy measures generalisation to unseen subjects.

Deterministic (fixed seed, stdlib only). Run from anywhere::

    python recipes/data/make_reward_data.py            # writes recipes/data/helpfulness_ranked.jsonl
    python recipes/data/make_reward_data.py --out x.jsonl
"""

from __future__ import annotations

import argparse
import json
import random
import re
from pathlib import Path

SEED = 20240607
K = 4
N_TEST_TOPICS = 10
TRAIN_GROUPS = 600
TEST_GROUPS_PER_TOPIC = 12
OUT_PATH = Path(__file__).resolve().parent / "helpfulness_ranked.jsonl"

# (topic name used in vague/rude replies, [(task, [three concrete tips]), ...]). A task must read naturally after
# "How do I ...?"; tips are standalone second-person sentences.
Topic = tuple[str, list[tuple[str, list[str]]]]

TOPICS: list[Topic] = [
    ("cooking", [
        ("cook rice so it isn't sticky", [
            "Rinse the rice in cold water until the water runs clear to wash off surface starch.",
            "Use about 1.5 cups of water per cup of long-grain rice and keep the lid on while it simmers.",
            "Let it rest off the heat for ten minutes, then fluff it with a fork.",
        ]),
        ("sear a steak properly", [
            "Pat the steak completely dry and salt it at least 40 minutes ahead.",
            "Heat a heavy pan until it is smoking slightly before the meat goes in.",
            "Leave it alone for two to three minutes per side so a crust can form, then rest it for five minutes.",
        ]),
        ("make a simple tomato sauce", [
            "Soften chopped onion and garlic in olive oil over medium heat without browning them.",
            "Add a can of crushed tomatoes, a pinch of salt and a pinch of sugar to balance the acidity.",
            "Simmer for at least 20 minutes and finish with fresh basil.",
        ]),
        ("keep vegetables crisp when stir-frying", [
            "Cut everything to the same size so it cooks evenly.",
            "Use very high heat and cook in small batches so the pan does not steam the vegetables.",
            "Add the sauce only in the last minute of cooking.",
        ]),
    ]),
    ("baking", [
        ("bake a cake that doesn't sink in the middle", [
            "Check your oven temperature with an oven thermometer, since many ovens run cool.",
            "Do not open the oven door during the first two thirds of the baking time.",
            "Measure flour by weight and make sure your baking powder is fresh.",
        ]),
        ("make chewy chocolate chip cookies", [
            "Use more brown sugar than white sugar because it holds moisture.",
            "Chill the dough for at least an hour before baking.",
            "Take them out when the centres still look slightly underdone.",
        ]),
        ("get flaky pie crust", [
            "Keep the butter and water ice cold so the butter stays in small pieces.",
            "Mix only until the dough just holds together to avoid developing gluten.",
            "Rest the dough in the fridge for an hour before rolling.",
        ]),
        ("substitute eggs in muffins", [
            "Use a quarter cup of unsweetened applesauce or mashed banana per egg.",
            "A tablespoon of ground flaxseed mixed with three tablespoons of water also works as a binder.",
            "Add an extra half teaspoon of baking powder to make up for the lost lift.",
        ]),
    ]),
    ("bread making", [
        ("bake sourdough with a more open crumb", [
            "Raise the hydration gradually, for example from 70 to 75 percent water.",
            "Do a few sets of stretch and folds in the first two hours of bulk fermentation.",
            "Let the bulk rise go until the dough has grown by about half before shaping.",
        ]),
        ("tell when bread dough has proofed enough", [
            "Press the dough gently with a floured finger; it should spring back slowly and leave a small dent.",
            "Look for roughly a doubling in size for most yeasted doughs.",
            "Watch the dough rather than the clock, because warm kitchens proof much faster.",
        ]),
        ("get a crispy crust on homemade bread", [
            "Bake in a preheated Dutch oven with the lid on for the first 20 minutes.",
            "If you bake on a stone, put a tray of boiling water in the oven for steam.",
            "Let the loaf cool completely on a rack so the crust does not go soft.",
        ]),
        ("keep homemade bread fresh longer", [
            "Store it cut side down on a board or in a bread box instead of the fridge.",
            "Freeze sliced bread in a sealed bag and toast slices straight from frozen.",
            "Adding a little fat, like butter or olive oil, to the dough slows staling.",
        ]),
    ]),
    ("gardening", [
        ("grow tomatoes in containers", [
            "Choose a pot of at least 20 litres with drainage holes.",
            "Give the plants six to eight hours of direct sun a day.",
            "Water deeply whenever the top few centimetres of soil are dry and feed weekly once flowers appear.",
        ]),
        ("get rid of aphids without chemicals", [
            "Knock them off with a strong spray of water every few days.",
            "Wipe leaves with a mild solution of water and a few drops of dish soap.",
            "Encourage ladybirds and lacewings by planting flowers like dill and yarrow nearby.",
        ]),
        ("start a vegetable garden from scratch", [
            "Pick the sunniest spot you have and start small, with one or two beds.",
            "Mix plenty of compost into the soil before planting.",
            "Begin with easy crops such as lettuce, radishes, beans and courgettes.",
        ]),
        ("improve clay soil", [
            "Dig in several centimetres of compost or well-rotted manure every year.",
            "Avoid working the soil when it is wet, since that compacts it.",
            "Consider raised beds so the roots sit above the heaviest clay.",
        ]),
    ]),
    ("houseplants", [
        ("keep a fiddle leaf fig alive", [
            "Put it near a bright window with plenty of indirect light and avoid moving it around.",
            "Water only when the top five centimetres of soil are dry.",
            "Wipe the large leaves every few weeks so dust does not block the light.",
        ]),
        ("tell if I'm overwatering my plants", [
            "Yellowing lower leaves and soil that stays damp for days are common signs.",
            "Check the roots: healthy ones are firm and white, rotting ones are brown and mushy.",
            "Use pots with drainage holes and empty the saucer after watering.",
        ]),
        ("propagate a pothos", [
            "Cut a stem just below a node, the small bump where roots form.",
            "Place the cutting in a glass of water in bright indirect light and change the water weekly.",
            "Pot it in soil once the roots are a few centimetres long.",
        ]),
        ("care for succulents indoors", [
            "Give them the brightest window you have, ideally south facing.",
            "Use a gritty cactus mix and a pot with a drainage hole.",
            "Water thoroughly but only when the soil is completely dry, and even less in winter.",
        ]),
    ]),
    ("travel planning", [
        ("find cheap flights", [
            "Compare prices across several dates with a flexible date search.",
            "Set price alerts a couple of months before you want to travel.",
            "Check nearby airports and consider flying midweek, which is often cheaper.",
        ]),
        ("pack light for a two-week trip", [
            "Choose clothes in two or three colours that all mix and match.",
            "Plan to do laundry once mid-trip instead of packing fourteen outfits.",
            "Wear your bulkiest shoes and jacket on the plane.",
        ]),
        ("deal with jet lag", [
            "Shift your sleep by an hour a day for a few days before you leave.",
            "Get outside in daylight in the morning at your destination.",
            "Avoid long naps on the first day and stay up until a normal local bedtime.",
        ]),
        ("plan a road trip", [
            "Keep daily driving to about four or five hours so the trip stays enjoyable.",
            "Book the first and last night's accommodation in advance and leave the middle flexible.",
            "Have the car serviced and check the tyres and spare before you go.",
        ]),
    ]),
    ("Python programming", [
        ("read a CSV file in Python", [
            "Use the built-in csv module: open the file with newline='' and pass it to csv.DictReader.",
            "For analysis, pandas.read_csv loads it straight into a DataFrame.",
            "Set the encoding explicitly, for example encoding='utf-8', to avoid surprises.",
        ]),
        ("fix an IndentationError in Python", [
            "Make sure you use either spaces or tabs consistently, ideally four spaces.",
            "Turn on 'show whitespace' in your editor to spot mixed indentation.",
            "Check that every line ending in a colon is followed by an indented block.",
        ]),
        ("set up a virtual environment in Python", [
            "Run python -m venv .venv in your project folder.",
            "Activate it with source .venv/bin/activate on macOS or Linux, or .venv\\Scripts\\activate on Windows.",
            "Install packages with pip while it is active and save them with pip freeze > requirements.txt.",
        ]),
        ("speed up a slow Python loop", [
            "Profile first with cProfile to find where the time actually goes.",
            "Replace element-wise loops over numbers with vectorised NumPy operations.",
            "Use sets or dictionaries for membership checks instead of lists.",
        ]),
    ]),
    ("running", [
        ("start running as a complete beginner", [
            "Alternate one minute of jogging with two minutes of walking for 20 minutes.",
            "Run three times a week with a rest day in between.",
            "Keep the pace easy enough that you could hold a conversation.",
        ]),
        ("avoid shin splints when running", [
            "Increase your weekly distance by no more than about ten percent.",
            "Replace running shoes every 500 to 800 kilometres.",
            "Add calf raises and other lower-leg strength work twice a week.",
        ]),
        ("train for my first 10k", [
            "Build up to three or four runs a week over eight to ten weeks.",
            "Make one run each week a little longer than the rest.",
            "Include one session with short faster intervals once you have a base.",
        ]),
        ("breathe better while running", [
            "Breathe through both your nose and mouth so you get enough air.",
            "Try a rhythm such as inhaling for three steps and exhaling for two.",
            "Slow down if you cannot speak in short sentences; that usually fixes the breathing.",
        ]),
    ]),
    ("strength training", [
        ("do a proper squat", [
            "Stand with your feet about shoulder width apart and toes slightly turned out.",
            "Push your hips back and keep your chest up as you bend your knees.",
            "Go as low as you can with a neutral back and drive up through your whole foot.",
        ]),
        ("build muscle as a beginner", [
            "Train each muscle group two or three times a week with compound lifts.",
            "Add a little weight or a rep each week so the work keeps progressing.",
            "Eat enough protein, roughly 1.6 grams per kilogram of body weight, and sleep well.",
        ]),
        ("get my first pull-up", [
            "Practise slow negatives: jump to the top and lower yourself over three to five seconds.",
            "Use a resistance band looped over the bar for assisted reps.",
            "Strengthen your back with rows two or three times a week.",
        ]),
        ("avoid lower back pain when deadlifting", [
            "Keep the bar close to your shins so it travels in a straight line.",
            "Brace your core with a deep breath before each rep.",
            "Start light and film yourself to check that your back stays neutral.",
        ]),
    ]),
    ("budgeting", [
        ("make a monthly budget", [
            "List your take-home pay and all fixed bills first.",
            "Track every expense for a month to see where the money really goes.",
            "Give each remaining pound or dollar a job, such as savings, groceries or fun money.",
        ]),
        ("build an emergency fund", [
            "Start with a small target, like one month of essential expenses.",
            "Set up an automatic transfer to a separate savings account on payday.",
            "Put windfalls such as tax refunds straight into the fund.",
        ]),
        ("stop impulse spending", [
            "Wait 48 hours before any non-essential purchase.",
            "Unsubscribe from shop newsletters and remove saved card details.",
            "Use a weekly cash or debit allowance for discretionary spending.",
        ]),
        ("pay off credit card debt faster", [
            "Pay more than the minimum every month, even a small extra amount helps.",
            "Focus extra payments on the card with the highest interest rate.",
            "Look into a zero-percent balance transfer if you can clear it within the offer period.",
        ]),
    ]),
    ("coffee", [
        ("make better coffee with a French press", [
            "Use a coarse grind, about like sea salt.",
            "Use roughly one gram of coffee per 15 grams of water just off the boil.",
            "Steep for four minutes, then press slowly and pour it all out so it does not over-extract.",
        ]),
        ("make cold brew at home", [
            "Mix coarsely ground coffee with cold water at about one part coffee to eight parts water.",
            "Let it steep in the fridge for 12 to 18 hours.",
            "Strain through a paper filter and dilute to taste.",
        ]),
        ("store coffee beans", [
            "Keep them in an airtight, opaque container at room temperature.",
            "Buy amounts you will use within two to three weeks.",
            "Grind just before brewing for the best flavour.",
        ]),
        ("descale a coffee machine", [
            "Run a mix of equal parts white vinegar and water, or a commercial descaler, through the machine.",
            "Let it sit halfway through the cycle for 20 minutes to dissolve the scale.",
            "Run two or three cycles of plain water afterwards to rinse it out.",
        ]),
    ]),
    ("tea", [
        ("brew green tea without it tasting bitter", [
            "Use water at around 75 to 80 degrees Celsius, not boiling.",
            "Steep for only one to two minutes.",
            "Use about one teaspoon of leaves per cup and remove them when time is up.",
        ]),
        ("make a good cup of black tea", [
            "Use freshly boiled water and warm the pot or mug first.",
            "Steep for three to five minutes depending on how strong you like it.",
            "Add milk after the tea has brewed rather than before.",
        ]),
        ("make iced tea that isn't cloudy", [
            "Brew the tea at double strength and let it cool to room temperature before chilling.",
            "Use filtered or soft water if your tap water is hard.",
            "Or cold-brew the leaves in the fridge overnight, which rarely turns cloudy.",
        ]),
        ("choose loose leaf tea as a beginner", [
            "Start with a small sampler so you can try a few styles.",
            "Oolongs and Darjeelings are forgiving and show a lot of variety.",
            "Buy from shops that list the harvest date and origin.",
        ]),
    ]),
    ("cycling", [
        ("fix a flat bike tyre", [
            "Remove the wheel and use tyre levers to take one side of the tyre off the rim.",
            "Find the hole, and check the inside of the tyre for glass or thorns.",
            "Patch or replace the tube, refit the tyre and inflate it to the pressure on the sidewall.",
        ]),
        ("adjust my bike seat height", [
            "Set it so your leg is almost straight with a slight bend at the bottom of the pedal stroke.",
            "Your hips should not rock from side to side while pedalling.",
            "Change the height a few millimetres at a time and test ride between changes.",
        ]),
        ("ride safely in city traffic", [
            "Ride a door's width away from parked cars.",
            "Make eye contact with drivers at junctions and signal clearly.",
            "Use front and rear lights, even during the day.",
        ]),
        ("clean and lube a bike chain", [
            "Wipe the chain with a rag while backpedalling, or use a degreaser for heavy grime.",
            "Apply one drop of chain lube to each roller.",
            "Wipe off the excess after a few minutes so it does not attract dirt.",
        ]),
    ]),
    ("photography", [
        ("take sharper photos", [
            "Use a shutter speed at least as fast as one over your focal length.",
            "Brace yourself or use a tripod, and use the self-timer to avoid shake.",
            "Focus on the subject's eyes for portraits.",
        ]),
        ("take better photos with my phone", [
            "Clean the lens before shooting; a smudge softens everything.",
            "Tap the screen to set focus and drag to adjust exposure.",
            "Use natural light from a window rather than the flash.",
        ]),
        ("photograph the night sky", [
            "Use a tripod and a wide lens at its widest aperture.",
            "Start with about 15 to 20 seconds at ISO 1600 to 3200.",
            "Focus manually on a bright star using live view zoom.",
        ]),
        ("understand aperture", [
            "Aperture is the size of the lens opening, written as an f-number like f/2.8.",
            "A small f-number lets in more light and blurs the background more.",
            "Use around f/8 for landscapes where you want everything sharp.",
        ]),
    ]),
    ("car maintenance", [
        ("check my car's oil level", [
            "Park on level ground and wait a few minutes after turning off the engine.",
            "Pull the dipstick, wipe it, reinsert it fully and pull it out again.",
            "The oil should sit between the two marks; top up a little at a time if it is low.",
        ]),
        ("jump-start a car", [
            "Connect red to the dead battery's positive terminal, then to the good battery's positive.",
            "Connect black to the good battery's negative and the other end to bare metal on the dead car.",
            "Start the good car, wait a few minutes, then start the dead one and remove the cables in reverse order.",
        ]),
        ("check tyre pressure", [
            "Check when the tyres are cold, before driving far.",
            "Find the correct pressure on the sticker inside the driver's door, not on the tyre.",
            "Use a gauge on each valve and add air until it matches.",
        ]),
        ("make my car battery last longer", [
            "Avoid lots of very short trips that never let the battery recharge.",
            "Keep the terminals clean and tight.",
            "Use a trickle charger if the car sits unused for weeks.",
        ]),
    ]),
    ("house cleaning", [
        ("clean a really dirty oven", [
            "Spread a paste of baking soda and water inside and leave it overnight.",
            "Wipe it off with a damp cloth and a plastic scraper.",
            "Spray a little vinegar on any remaining residue to lift it.",
        ]),
        ("get rid of limescale in the bathroom", [
            "Spray undiluted white vinegar on taps and shower screens and leave it for 30 minutes.",
            "Wrap a vinegar-soaked cloth around taps for stubborn build-up.",
            "Squeegee the shower after each use to stop it returning.",
        ]),
        ("keep the house tidy with little time", [
            "Do a ten-minute reset every evening.",
            "Give everything a home so putting things away is quick.",
            "Clean one room per day instead of everything at the weekend.",
        ]),
        ("clean grout between tiles", [
            "Scrub with a paste of baking soda and water using an old toothbrush.",
            "For mould, use a diluted bleach solution with good ventilation.",
            "Seal the grout afterwards so it stays clean longer.",
        ]),
    ]),
    ("laundry", [
        ("get a red wine stain out of a shirt", [
            "Blot, do not rub, as soon as possible.",
            "Cover the stain with salt or rinse it with cold water from the back of the fabric.",
            "Treat it with a stain remover or a little dish soap before washing in cold water.",
        ]),
        ("stop clothes from shrinking in the wash", [
            "Wash wool and cotton on a cold or 30-degree cycle.",
            "Air dry delicate items flat instead of using the tumble dryer.",
            "Read the care label and use the wool or hand-wash setting when it asks for it.",
        ]),
        ("keep white clothes white", [
            "Wash whites separately from colours.",
            "Add oxygen bleach or a scoop of baking soda to the wash.",
            "Dry them in sunlight, which brightens them naturally.",
        ]),
        ("get rid of the smell in my washing machine", [
            "Run an empty hot cycle with a cup of white vinegar or a machine cleaner.",
            "Clean the rubber door seal and the detergent drawer.",
            "Leave the door open between washes so it can dry.",
        ]),
    ]),
    ("dog care", [
        ("house-train a puppy", [
            "Take the puppy outside first thing in the morning, after meals and after naps.",
            "Praise and reward immediately when it goes in the right place.",
            "Clean accidents with an enzyme cleaner so the smell does not draw it back.",
        ]),
        ("stop my dog from pulling on the lead", [
            "Stop walking the moment the lead goes tight and only continue when it slackens.",
            "Reward the dog for walking next to you with small treats.",
            "Try a front-clip harness while you practise.",
        ]),
        ("teach my dog to come when called", [
            "Start indoors with no distractions and use a happy, consistent cue word.",
            "Reward generously every time, even if it took a while to come.",
            "Never call the dog to you for something it dislikes, like a bath.",
        ]),
        ("keep my dog's teeth healthy", [
            "Brush its teeth a few times a week with dog toothpaste.",
            "Offer dental chews or toys designed for cleaning teeth.",
            "Ask your vet to check the teeth at each annual visit.",
        ]),
    ]),
    ("cat care", [
        ("stop my cat scratching the sofa", [
            "Put a sturdy, tall scratching post right next to the sofa.",
            "Rub catnip on the post and reward your cat for using it.",
            "Cover the sofa corners with double-sided tape for a few weeks.",
        ]),
        ("introduce a new cat to my other cat", [
            "Keep the new cat in a separate room for the first week.",
            "Swap their bedding so they get used to each other's scent.",
            "Let them see each other through a gate or cracked door before any direct contact.",
        ]),
        ("get my cat to drink more water", [
            "Try a cat water fountain, since many cats prefer moving water.",
            "Place water bowls away from the food bowl.",
            "Add some wet food to their diet.",
        ]),
        ("keep a litter box from smelling", [
            "Scoop it at least once a day.",
            "Replace all the litter and wash the box every couple of weeks.",
            "Have one box per cat plus one extra.",
        ]),
    ]),
    ("language learning", [
        ("learn Spanish vocabulary faster", [
            "Use a spaced-repetition app and review a little every day.",
            "Learn words in short phrases instead of in isolation.",
            "Label objects around your home with their Spanish names.",
        ]),
        ("improve my listening in a new language", [
            "Listen to podcasts made for learners at your level.",
            "Watch shows with subtitles in the target language, not your own.",
            "Replay short clips and try to write down exactly what you hear.",
        ]),
        ("get over the fear of speaking a new language", [
            "Book short sessions with a tutor or language exchange partner.",
            "Prepare a few phrases for common situations before you need them.",
            "Remember that mistakes are normal and most people appreciate the effort.",
        ]),
        ("stay consistent with language practice", [
            "Set a small daily minimum, such as ten minutes.",
            "Attach practice to an existing habit, like your morning coffee.",
            "Track your streak on a calendar.",
        ]),
    ]),
    ("studying", [
        ("study more effectively for exams", [
            "Test yourself with practice questions instead of rereading notes.",
            "Spread your study over several days rather than cramming.",
            "Study in 25 to 50 minute blocks with short breaks.",
        ]),
        ("take better notes in lectures", [
            "Write key ideas in your own words rather than copying slides.",
            "Leave space to add questions and summaries afterwards.",
            "Review and tidy your notes within 24 hours.",
        ]),
        ("stay focused while studying at home", [
            "Put your phone in another room.",
            "Use a dedicated study spot that you only use for work.",
            "Write down one clear goal for each session.",
        ]),
        ("memorise facts for a test", [
            "Use flashcards with spaced repetition.",
            "Explain the material out loud as if teaching someone.",
            "Create simple mnemonics for lists.",
        ]),
    ]),
    ("job interviews", [
        ("prepare for a job interview", [
            "Research the company, its products and recent news.",
            "Prepare examples of your work using the situation, task, action, result format.",
            "Practise answers out loud and prepare two or three questions to ask them.",
        ]),
        ("answer 'what is your biggest weakness'", [
            "Pick a real but manageable weakness that is not central to the job.",
            "Explain what you are actively doing to improve it.",
            "Keep the answer short and end on the progress you have made.",
        ]),
        ("follow up after an interview", [
            "Send a short thank-you email within 24 hours.",
            "Mention something specific from the conversation.",
            "If you have not heard back by the date they gave, send one polite check-in.",
        ]),
        ("handle nerves before an interview", [
            "Arrive early and take a short walk to settle down.",
            "Try slow breathing, for example in for four counts and out for six.",
            "Remember that the interview is also your chance to evaluate them.",
        ]),
    ]),
    ("resume writing", [
        ("write a resume with no experience", [
            "Lead with education, projects and volunteer work.",
            "Highlight transferable skills like teamwork and communication with concrete examples.",
            "Keep it to one clean, readable page.",
        ]),
        ("make my resume stand out", [
            "Start each bullet with a strong action verb.",
            "Quantify results, for example 'reduced processing time by 20 percent'.",
            "Tailor the resume to the keywords in each job description.",
        ]),
        ("explain a gap in my resume", [
            "Be brief and honest about the reason.",
            "Mention anything you did during the gap, like courses or caregiving.",
            "Move the focus quickly to why you are ready for this role now.",
        ]),
        ("format a resume", [
            "Use a simple layout with clear headings and consistent fonts.",
            "List experience in reverse chronological order.",
            "Save and send it as a PDF so the formatting stays intact.",
        ]),
    ]),
    ("public speaking", [
        ("give a presentation without reading from slides", [
            "Put only a few keywords or an image on each slide.",
            "Rehearse out loud several times until you know the flow.",
            "Use small note cards with bullet points as a safety net.",
        ]),
        ("stop saying 'um' when speaking", [
            "Replace the filler with a short pause, which sounds confident.",
            "Record yourself practising to notice when you do it.",
            "Slow down, since fillers often come from rushing.",
        ]),
        ("calm my nerves before a speech", [
            "Practise in the actual room if you can.",
            "Take slow, deep breaths for a minute before you start.",
            "Memorise your first few sentences so the opening is smooth.",
        ]),
        ("open a talk in an engaging way", [
            "Start with a short story, a surprising fact or a question.",
            "Tell the audience what they will get out of the talk.",
            "Skip long introductions about yourself.",
        ]),
    ]),
    ("time management", [
        ("stop procrastinating", [
            "Break the task into a first step that takes under five minutes.",
            "Work in timed 25-minute blocks.",
            "Remove distractions before you start, not during.",
        ]),
        ("prioritise my to-do list", [
            "Sort tasks by urgency and importance and start with important ones.",
            "Pick your top three tasks for the day each morning.",
            "Do the hardest task first, when your energy is highest.",
        ]),
        ("manage my time working from home", [
            "Keep fixed start and finish times.",
            "Block focus time in your calendar and protect it.",
            "Take a real lunch break away from your desk.",
        ]),
        ("say no to extra commitments", [
            "Check your calendar before agreeing to anything.",
            "Use a polite script like 'I can't take this on right now'.",
            "Offer an alternative, such as a smaller contribution or a later date.",
        ]),
    ]),
    ("spreadsheets", [
        ("use VLOOKUP in Excel", [
            "The syntax is =VLOOKUP(value, table, column_number, FALSE).",
            "Put FALSE as the last argument so it only returns exact matches.",
            "The lookup value must be in the first column of the table range.",
        ]),
        ("remove duplicates in a spreadsheet", [
            "In Excel, select the range and use Data, Remove Duplicates.",
            "In Google Sheets, use Data, Data cleanup, Remove duplicates.",
            "Copy the data to a new sheet first so you keep the original.",
        ]),
        ("make a pivot table", [
            "Click inside your data and choose Insert, PivotTable.",
            "Drag a category into Rows and a number field into Values.",
            "Make sure every column has a header and there are no blank rows.",
        ]),
        ("freeze the top row in a spreadsheet", [
            "In Excel, go to View, Freeze Panes, Freeze Top Row.",
            "In Google Sheets, use View, Freeze, 1 row.",
            "The header then stays visible as you scroll down.",
        ]),
    ]),
    ("home wifi", [
        ("improve my wifi signal", [
            "Place the router centrally and up high, away from thick walls and microwaves.",
            "Switch to the 5 GHz band for devices close to the router.",
            "Consider a mesh system for larger homes.",
        ]),
        ("secure my home wifi network", [
            "Change the router's default admin password.",
            "Use WPA3, or WPA2 if WPA3 is not available, with a long passphrase.",
            "Keep the router firmware updated.",
        ]),
        ("fix wifi that keeps disconnecting", [
            "Restart the router and modem.",
            "Change the wifi channel to avoid interference from neighbours.",
            "Update your device's network drivers.",
        ]),
        ("set up a guest wifi network", [
            "Enable the guest network option in your router's settings.",
            "Give it a separate password from your main network.",
            "Turn on isolation so guests cannot see your other devices.",
        ]),
    ]),
    ("hiking", [
        ("prepare for my first long hike", [
            "Build up with shorter hikes over a few weeks.",
            "Break in your boots before the hike.",
            "Pack water, snacks, a map, a rain layer and a first aid kit.",
        ]),
        ("avoid blisters when hiking", [
            "Wear moisture-wicking socks rather than cotton.",
            "Make sure your boots fit with room for your toes.",
            "Tape hot spots as soon as you feel them.",
        ]),
        ("choose hiking boots", [
            "Try them on in the afternoon, when your feet are slightly larger.",
            "Wear the socks you will hike in.",
            "Check that your heel does not lift when you walk uphill.",
        ]),
        ("stay safe hiking alone", [
            "Tell someone your route and expected return time.",
            "Carry a charged phone and a paper map.",
            "Check the weather and turn back if conditions change.",
        ]),
    ]),
    ("camping", [
        ("stay warm camping in cold weather", [
            "Use a sleeping pad with a good insulation value under your sleeping bag.",
            "Wear dry base layers to bed, not the clothes you sweated in.",
            "Eat a snack before sleeping so your body makes heat.",
        ]),
        ("pitch a tent in the rain", [
            "Practise pitching it at home first.",
            "Set up the rain fly first if your tent allows it.",
            "Choose slightly higher ground so water does not pool.",
        ]),
        ("cook easy meals while camping", [
            "Prepare and chop ingredients at home.",
            "Make foil packets of vegetables and sausage to cook over coals.",
            "Bring one-pot meals like pasta or chilli.",
        ]),
        ("choose a good campsite", [
            "Look for flat, durable ground.",
            "Camp at least 60 metres from lakes and streams.",
            "Avoid spots under dead branches.",
        ]),
    ]),
    ("fishing", [
        ("start fishing as a beginner", [
            "Get a simple spinning rod and reel combo.",
            "Start with live bait like worms under a float.",
            "Check the local rules and get a licence if one is required.",
        ]),
        ("tie a fishing knot", [
            "The improved clinch knot is a good first knot to learn.",
            "Wet the line before pulling the knot tight to reduce friction.",
            "Leave a short tag end and test the knot with a firm pull.",
        ]),
        ("catch more fish from the shore", [
            "Fish early in the morning or in the evening.",
            "Look for structure like rocks, weed beds or drop-offs.",
            "Keep quiet and avoid casting shadows on the water.",
        ]),
        ("release a fish safely", [
            "Wet your hands before touching the fish.",
            "Use barbless hooks or pinch the barb down.",
            "Keep the fish in the water as much as possible and hold it facing into the current until it swims off.",
        ]),
    ]),
    ("home DIY", [
        ("paint a room without streaks", [
            "Use a good quality roller and keep it loaded with paint.",
            "Paint in overlapping W shapes and keep a wet edge.",
            "Apply two thin coats rather than one thick one.",
        ]),
        ("fix a leaking tap", [
            "Turn off the water supply under the sink first.",
            "Take the tap apart and replace the worn washer or cartridge.",
            "Take the old part to the shop so you buy the right size.",
        ]),
        ("hang a heavy picture on a plasterboard wall", [
            "Use a stud finder and screw into a stud where possible.",
            "Otherwise use heavy-duty wall anchors rated for the weight.",
            "Use two hanging points so the frame stays level.",
        ]),
        ("unclog a drain without chemicals", [
            "Pour boiling water down the drain.",
            "Use half a cup of baking soda followed by a cup of vinegar and flush after 15 minutes.",
            "Use a plunger or a drain snake to remove hair.",
        ]),
    ]),
    ("woodworking", [
        ("cut a straight line with a circular saw", [
            "Clamp a straight board to your workpiece as a guide.",
            "Set the blade depth just a few millimetres below the wood.",
            "Support both sides of the cut so the blade does not bind.",
        ]),
        ("sand wood smoothly", [
            "Work through the grits, for example 80, then 120, then 180.",
            "Sand with the grain.",
            "Wipe off the dust between grits.",
        ]),
        ("choose wood for a first project", [
            "Pine is cheap and easy to work.",
            "Poplar is a good step up if you plan to paint the piece.",
            "Pick straight boards without large knots.",
        ]),
        ("apply wood finish", [
            "Apply thin coats with a foam brush or a rag.",
            "Sand lightly with fine paper between coats.",
            "Let each coat dry fully in a dust-free area.",
        ]),
    ]),
    ("knitting", [
        ("cast on in knitting", [
            "The long-tail cast on is a versatile first method.",
            "Leave a tail about three times the width of your project.",
            "Keep the stitches loose enough to slide easily on the needle.",
        ]),
        ("fix a dropped stitch", [
            "Use a crochet hook to ladder the stitch back up.",
            "Work from the front, pulling each horizontal bar through the loop.",
            "Place the stitch back on the needle, untwisted.",
        ]),
        ("choose yarn for a first project", [
            "Pick a smooth, light-coloured, medium-weight yarn.",
            "Avoid fluffy or very dark yarns, which hide the stitches.",
            "Wool or a wool blend is forgiving for beginners.",
        ]),
        ("keep knitting tension even", [
            "Wrap the yarn around your fingers the same way every time.",
            "Relax your hands and take breaks.",
            "Practise with swatches before starting the real project.",
        ]),
    ]),
    ("guitar", [
        ("learn guitar chords faster", [
            "Start with G, C, D and E minor.",
            "Practise switching between two chords for one minute at a time.",
            "Keep your thumb behind the neck and press just behind the frets.",
        ]),
        ("tune a guitar", [
            "Use a clip-on tuner or a tuning app.",
            "Standard tuning from the thickest string is E, A, D, G, B, E.",
            "Tune up to the note rather than down, so the string holds its pitch.",
        ]),
        ("build calluses for guitar", [
            "Play for 15 to 20 minutes several times a day instead of one long session.",
            "Press only as hard as needed for a clean note.",
            "Avoid soaking your fingertips right before playing.",
        ]),
        ("strum in rhythm on guitar", [
            "Keep your strumming hand moving down and up constantly.",
            "Practise with a metronome at a slow tempo.",
            "Count out loud, for example one and two and three and four.",
        ]),
    ]),
    ("piano", [
        ("practise piano effectively", [
            "Practise hands separately before putting them together.",
            "Use a metronome and increase the speed gradually.",
            "Focus on the hardest few bars rather than always starting from the top.",
        ]),
        ("read sheet music for piano", [
            "Learn the landmark notes: middle C, treble G and bass F.",
            "Read intervals between notes instead of naming every note.",
            "Practise sight-reading very easy pieces every day.",
        ]),
        ("improve finger strength on the piano", [
            "Play scales and arpeggios slowly and evenly.",
            "Try Hanon exercises for a few minutes a day.",
            "Keep your fingers curved and your wrists relaxed.",
        ]),
        ("choose a beginner digital piano", [
            "Look for 88 weighted keys.",
            "Check that it has a sustain pedal input.",
            "Try it in a shop first if you can, to check the key feel.",
        ]),
    ]),
    ("drawing", [
        ("draw realistic faces", [
            "Learn the basic proportions: the eyes sit halfway down the head.",
            "Block in shapes lightly before adding detail.",
            "Study light and shadow with simple value sketches.",
        ]),
        ("improve my drawing skills quickly", [
            "Draw from life every day, even for ten minutes.",
            "Do quick gesture drawings of people.",
            "Copy the work of artists you admire to learn how they solved problems.",
        ]),
        ("draw in perspective", [
            "Start with one-point perspective and a single vanishing point on the horizon line.",
            "Draw simple boxes in perspective before anything complex.",
            "Use a ruler for the construction lines at first.",
        ]),
        ("shade with a pencil", [
            "Use a range of pencils, such as 2H, HB, 2B and 6B.",
            "Build up tone gradually with light layers.",
            "Use a blending stump or tissue for smooth transitions.",
        ]),
    ]),
    ("chess", [
        ("get better at chess", [
            "Solve tactics puzzles every day.",
            "Review your own games, especially the losses.",
            "Learn basic endgames such as king and pawn versus king.",
        ]),
        ("open a chess game well", [
            "Control the centre with your pawns and pieces.",
            "Develop knights and bishops before moving the same piece twice.",
            "Castle early to keep your king safe.",
        ]),
        ("stop blundering pieces in chess", [
            "Before every move, check what your opponent's last move threatens.",
            "Check whether the piece you are moving leaves something undefended.",
            "Play slower time controls while you build the habit.",
        ]),
        ("checkmate with a king and rook", [
            "Use the rook to cut off the enemy king to a shrinking box.",
            "Bring your own king closer to support the rook.",
            "Deliver mate on the edge of the board with the rook.",
        ]),
    ]),
    ("party planning", [
        ("plan a birthday party on a budget", [
            "Host at home or in a park instead of renting a venue.",
            "Make a potluck or serve simple homemade snacks.",
            "Use digital invitations and keep decorations to one theme.",
        ]),
        ("plan a surprise party", [
            "Recruit a friend to keep the guest of honour busy.",
            "Use a private group chat for guests, not social media.",
            "Have guests arrive 30 minutes before the guest of honour.",
        ]),
        ("work out how much food to buy for a party", [
            "Plan for about five or six small bites per guest per hour.",
            "Offer one main dish for every 10 to 15 people at a buffet.",
            "Buy about one drink per guest per hour plus water.",
        ]),
        ("keep kids entertained at a party", [
            "Plan two or three simple games like musical chairs or a treasure hunt.",
            "Set up a craft table with stickers and colouring.",
            "Keep activities short and have a quiet corner.",
        ]),
    ]),
    ("moving house", [
        ("pack for a move efficiently", [
            "Start with the rooms you use least.",
            "Label every box with its room and contents.",
            "Pack an essentials box with chargers, toiletries and a kettle for the first night.",
        ]),
        ("make moving day less stressful", [
            "Book the van or movers several weeks ahead.",
            "Clear a path and protect the floors.",
            "Keep important documents with you, not in the van.",
        ]),
        ("move heavy furniture safely", [
            "Lift with your legs, not your back.",
            "Use furniture sliders or a dolly.",
            "Remove legs and drawers to make pieces lighter.",
        ]),
        ("settle into a new home", [
            "Unpack the kitchen and bedroom first.",
            "Change the locks and test the smoke alarms.",
            "Introduce yourself to the neighbours.",
        ]),
    ]),
    ("meal prep", [
        ("meal prep for the week", [
            "Pick two or three recipes that reheat well, such as curries or grain bowls.",
            "Cook grains and proteins in bulk on Sunday.",
            "Store meals in portioned containers and eat the fish dishes first.",
        ]),
        ("keep meal-prepped food fresh", [
            "Cool food quickly and refrigerate it within two hours.",
            "Keep sauces separate until you eat.",
            "Freeze anything you will not eat within three or four days.",
        ]),
        ("make healthy lunches for work", [
            "Build each lunch from a protein, a vegetable and a whole grain.",
            "Make a big salad base that lasts a few days and add dressing on the day.",
            "Use leftovers from dinner.",
        ]),
        ("meal prep on a tight budget", [
            "Plan meals around cheap staples like beans, lentils, eggs and rice.",
            "Buy seasonal vegetables and frozen vegetables.",
            "Cook in large batches and freeze portions.",
        ]),
    ]),
    ("grocery shopping", [
        ("save money on groceries", [
            "Plan meals and shop with a list.",
            "Compare unit prices on the shelf labels.",
            "Buy store brands for staples.",
        ]),
        ("choose ripe avocados", [
            "Gently squeeze: a ripe one yields slightly without feeling mushy.",
            "Flick off the small stem; green underneath means it is ready.",
            "Buy firm ones and ripen them in a paper bag with a banana.",
        ]),
        ("reduce food waste at home", [
            "Check the fridge before you shop.",
            "Store herbs like flowers, in a glass of water.",
            "Keep a 'use first' shelf for food close to its date.",
        ]),
        ("shop for groceries faster", [
            "Organise your list by store section.",
            "Shop at quieter times, such as weekday mornings.",
            "Use online ordering and pickup for regular items.",
        ]),
    ]),
    ("composting", [
        ("start composting at home", [
            "Choose a bin or a pile in a shady spot.",
            "Mix greens like food scraps with browns like dry leaves and cardboard.",
            "Keep it as damp as a wrung-out sponge and turn it every week or two.",
        ]),
        ("stop my compost from smelling", [
            "Add more browns, such as shredded paper or leaves.",
            "Turn the pile to add air.",
            "Avoid adding meat, dairy and oily food.",
        ]),
        ("compost in a small apartment", [
            "Try a worm bin, which is compact and has no smell when managed well.",
            "Bokashi bins ferment scraps in a sealed bucket.",
            "Check whether your city collects food waste.",
        ]),
        ("speed up composting", [
            "Chop scraps into small pieces.",
            "Turn the pile often to keep it aerated.",
            "Keep the greens to browns ratio roughly balanced.",
        ]),
    ]),
    ("bird watching", [
        ("get started with bird watching", [
            "Get a pair of 8x42 binoculars, a good all-round size.",
            "Use a field guide or an identification app for your region.",
            "Start in your garden or a local park early in the morning.",
        ]),
        ("attract birds to my garden", [
            "Put up feeders with a few types of seed.",
            "Provide a shallow bird bath and keep it clean.",
            "Plant native shrubs for shelter and berries.",
        ]),
        ("identify birds by their song", [
            "Learn the common birds around you first.",
            "Use a sound identification app to check your guesses.",
            "Listen in the early morning, when birds sing most.",
        ]),
        ("choose binoculars for birding", [
            "8x magnification gives a steadier, wider view than 10x.",
            "Look for a close focus under about three metres.",
            "Choose a waterproof, fog-proof model.",
        ]),
    ]),
    ("swimming", [
        ("breathe properly doing front crawl", [
            "Exhale steadily underwater through your nose and mouth.",
            "Turn your head to the side with the arm stroke rather than lifting it.",
            "Keep one goggle in the water while you breathe.",
        ]),
        ("swim longer without getting tired", [
            "Slow down and focus on a long, relaxed stroke.",
            "Use a kick that comes from the hips and stays small.",
            "Build endurance with intervals and short rests.",
        ]),
        ("get comfortable in deep water", [
            "Practise floating on your back in the shallow end first.",
            "Learn to tread water with slow, wide movements.",
            "Take a lesson with an instructor.",
        ]),
        ("stop my goggles from fogging", [
            "Apply anti-fog drops, or a tiny drop of baby shampoo, and rinse.",
            "Do not touch the inside of the lenses.",
            "Rinse them in cold water before you put them on.",
        ]),
    ]),
    ("yoga", [
        ("start doing yoga at home", [
            "Follow a beginner video series of 15 to 20 minutes.",
            "Use a non-slip mat and a folded blanket for support.",
            "Practise a few times a week rather than once for a long time.",
        ]),
        ("do downward dog correctly", [
            "Spread your fingers wide and press through your whole hand.",
            "Bend your knees if needed to keep a long spine.",
            "Let your head hang between your arms.",
        ]),
        ("become more flexible with yoga", [
            "Hold poses for several slow breaths.",
            "Practise consistently, even for ten minutes a day.",
            "Warm up first and never force a stretch.",
        ]),
        ("choose a yoga mat", [
            "Look for around four to six millimetres of thickness for comfort.",
            "Choose a grippy surface such as natural rubber.",
            "Make sure it is long enough for your height.",
        ]),
    ]),
    ("meditation", [
        ("start meditating", [
            "Begin with five minutes a day at the same time.",
            "Focus on the feeling of your breath and gently return when your mind wanders.",
            "Use a guided app for the first few weeks.",
        ]),
        ("stop my mind wandering during meditation", [
            "Noticing that your mind has wandered is part of the practice.",
            "Count breaths from one to ten and start again.",
            "Label thoughts briefly as 'thinking' and return to the breath.",
        ]),
        ("meditate when I feel anxious", [
            "Try box breathing: in for four, hold for four, out for four, hold for four.",
            "Name five things you can see and four things you can hear to ground yourself.",
            "Keep the sessions short and gentle.",
        ]),
        ("find the time to meditate every day", [
            "Attach it to an existing habit, like right after brushing your teeth.",
            "Start with just two minutes.",
            "Set a reminder on your phone.",
        ]),
    ]),
    ("sleep", [
        ("fall asleep faster", [
            "Keep the same bedtime and wake time every day, even at weekends.",
            "Avoid caffeine after about 2 pm.",
            "Dim the lights and put screens away an hour before bed.",
        ]),
        ("stop waking up tired", [
            "Aim for seven to nine hours of sleep.",
            "Get bright light soon after waking.",
            "Avoid alcohol close to bedtime, since it fragments sleep.",
        ]),
        ("nap without feeling groggy", [
            "Keep naps to 10 to 20 minutes.",
            "Nap in the early afternoon, not the evening.",
            "Have a coffee right before a short nap so it kicks in as you wake.",
        ]),
        ("make my bedroom better for sleep", [
            "Keep it cool, around 18 degrees Celsius.",
            "Use blackout curtains or an eye mask.",
            "Use earplugs or a white noise machine.",
        ]),
    ]),
    ("writing fiction", [
        ("start writing a novel", [
            "Write a one-paragraph summary of the story first.",
            "Set a daily word goal, like 300 words.",
            "Do not edit while drafting; finish the draft first.",
        ]),
        ("write believable dialogue", [
            "Read it aloud to hear whether it sounds natural.",
            "Cut greetings and small talk that do not move the story.",
            "Give each character a distinct way of speaking.",
        ]),
        ("get past writer's block", [
            "Set a timer and free-write for ten minutes.",
            "Skip ahead and write a scene you are excited about.",
            "Change your location or write by hand for a while.",
        ]),
        ("create interesting characters", [
            "Give each one a clear want and a flaw.",
            "Put them in situations that test their values.",
            "Show character through action rather than description.",
        ]),
    ]),
    ("reading", [
        ("read more books", [
            "Carry a book or an e-reader everywhere.",
            "Read for 20 minutes before bed instead of scrolling.",
            "Give yourself permission to abandon books you do not enjoy.",
        ]),
        ("remember more of what I read", [
            "Write a short summary after each chapter.",
            "Highlight sparingly and review your highlights.",
            "Discuss the book with someone.",
        ]),
        ("read faster without losing comprehension", [
            "Reduce re-reading by using a finger or pointer as a guide.",
            "Preview headings and summaries before you start.",
            "Practise with easier material first.",
        ]),
        ("get my kids to enjoy reading", [
            "Read aloud together every day.",
            "Let them choose their own books, including comics.",
            "Visit the library regularly.",
        ]),
    ]),
    ("aquariums", [
        ("set up a freshwater aquarium", [
            "Cycle the tank for four to six weeks before adding fish.",
            "Use a water conditioner to remove chlorine.",
            "Add a few hardy fish at a time.",
        ]),
        ("keep aquarium water clear", [
            "Do a 20 percent water change every week.",
            "Avoid overfeeding the fish.",
            "Clean the filter media in old tank water, never tap water.",
        ]),
        ("get rid of algae in a fish tank", [
            "Reduce the light to about eight hours a day.",
            "Add live plants to compete for nutrients.",
            "Keep algae-eaters like nerite snails.",
        ]),
        ("choose fish for a beginner tank", [
            "Pick hardy species such as platies, zebra danios or corydoras.",
            "Check adult sizes so the tank is big enough.",
            "Research whether the species you like get along.",
        ]),
    ]),
    ("git", [
        ("undo my last git commit", [
            "Use git reset --soft HEAD~1 to undo the commit but keep your changes staged.",
            "If it was already pushed, use git revert HEAD to create a new commit that undoes it.",
            "Use git reflog to recover if you reset too far.",
        ]),
        ("resolve a merge conflict in git", [
            "Open the conflicted files and look for the <<<<<<< and >>>>>>> markers.",
            "Edit the code to the version you want and delete the markers.",
            "Stage the files with git add and finish with git commit.",
        ]),
        ("write good git commit messages", [
            "Write a short summary line of about 50 characters in the imperative mood.",
            "Leave a blank line, then explain why the change was made.",
            "Keep each commit focused on one logical change.",
        ]),
        ("create a new branch in git", [
            "Run git switch -c my-branch to create it and move to it.",
            "Push it with git push -u origin my-branch.",
            "Give branches descriptive names like fix-login-timeout.",
        ]),
    ]),
    ("the Linux command line", [
        ("find a file on Linux", [
            "Use find /path -name 'filename' to search by name.",
            "Use locate for fast searches after running updatedb.",
            "Add -iname instead of -name for case-insensitive matches.",
        ]),
        ("check disk space on Linux", [
            "Run df -h to see free space on each filesystem.",
            "Use du -sh * in a folder to see what takes up space.",
            "Install ncdu for an interactive view.",
        ]),
        ("make a script executable on Linux", [
            "Add a shebang line such as #!/usr/bin/env bash at the top.",
            "Run chmod +x script.sh.",
            "Run it with ./script.sh.",
        ]),
        ("see which process is using a port on Linux", [
            "Run sudo ss -ltnp and look for the port number.",
            "Or use sudo lsof -i :8080.",
            "Stop it with kill followed by the process id.",
        ]),
    ]),
    ("web design", [
        ("centre a div with CSS", [
            "On the parent, set display: flex with justify-content: center and align-items: center.",
            "Or use display: grid and place-items: center.",
            "For horizontal centring only, give the div a width and margin: 0 auto.",
        ]),
        ("make a website mobile friendly", [
            "Add the viewport meta tag to the page head.",
            "Use relative units and flexible layouts instead of fixed pixel widths.",
            "Use media queries to adjust the layout for small screens.",
        ]),
        ("choose fonts for a website", [
            "Limit yourself to two font families.",
            "Use a body text size of at least 16 pixels.",
            "Check contrast and line spacing for readability.",
        ]),
        ("make my website load faster", [
            "Compress and resize images, ideally in WebP format.",
            "Minify CSS and JavaScript.",
            "Enable caching and use a CDN.",
        ]),
    ]),
    ("password security", [
        ("create a strong password", [
            "Use a long passphrase of four or more random words.",
            "Never reuse passwords across sites.",
            "Let a password manager generate and store them.",
        ]),
        ("set up two-factor authentication", [
            "Turn it on in the security settings of each important account.",
            "Prefer an authenticator app over SMS codes.",
            "Save the backup codes somewhere safe.",
        ]),
        ("spot a phishing email", [
            "Check the sender's actual address, not just the display name.",
            "Hover over links to see where they really go.",
            "Be wary of urgent requests for passwords or payments.",
        ]),
        ("choose a password manager", [
            "Pick one that uses end-to-end encryption and has a good security track record.",
            "Make sure it works on all your devices.",
            "Protect it with a strong master password and two-factor authentication.",
        ]),
    ]),
    ("saving energy at home", [
        ("lower my heating bill", [
            "Turn the thermostat down by one degree.",
            "Seal draughts around windows and doors.",
            "Bleed the radiators and service the boiler.",
        ]),
        ("reduce my electricity use", [
            "Switch to LED bulbs.",
            "Turn devices fully off instead of leaving them on standby.",
            "Run the washing machine and dishwasher only when full.",
        ]),
        ("keep my house cool without air conditioning", [
            "Close the blinds on sunny windows during the day.",
            "Open windows at night to let cool air in.",
            "Use fans to create a cross breeze.",
        ]),
        ("insulate my home cheaply", [
            "Add draught excluders to doors.",
            "Hang thick curtains.",
            "Put insulation in the loft if there is little or none.",
        ]),
    ]),
    ("parenting toddlers", [
        ("handle toddler tantrums", [
            "Stay calm and keep your voice low.",
            "Name the feeling, for example 'You are upset because the tower fell.'",
            "Offer two simple choices to give them some control.",
        ]),
        ("get my toddler to sleep through the night", [
            "Keep a consistent bedtime routine with a bath, a book and bed.",
            "Put them down drowsy but awake.",
            "Keep night-time visits brief and boring.",
        ]),
        ("get a picky toddler to eat vegetables", [
            "Offer new foods alongside familiar ones.",
            "Keep offering without pressure; it can take ten or more tries.",
            "Let them help wash or stir the vegetables.",
        ]),
        ("potty train a toddler", [
            "Wait for signs of readiness, like staying dry for two hours.",
            "Set regular potty times after meals and naps.",
            "Praise attempts and stay calm about accidents.",
        ]),
    ]),
]

# --- completion templates ---------------------------------------------------------------------------------------------

QUESTION_TEMPLATES = [
    "How do I {task}?",
    "What's the best way to {task}?",
    "Any tips on how to {task}?",
    "Could you explain how to {task}?",
    "I'm trying to {task}. Where should I start?",
    "I keep struggling to {task}. What am I doing wrong?",
    "What should a beginner know to {task}?",
    "Is there a simple way to {task}?",
    "Can you help me {task}?",
    "What do you recommend if I want to {task}?",
]

HELPFUL_OPENERS = [
    "Great question!",
    "Happy to help.",
    "Sure thing.",
    "Good question, and it's easier than it looks.",
    "Of course!",
    "Glad you asked.",
    "Absolutely, here's what works well.",
    "",
]
HELPFUL_INTROS = [
    "Here are a few things that help when you want to {task}:",
    "To {task}, I'd focus on a few points.",
    "A few practical steps to {task}:",
    "When people want to {task}, these usually make the biggest difference.",
    "This is what I'd suggest if you want to {task}.",
    "",
]
HELPFUL_CLOSERS = [
    "Hope that helps, and good luck!",
    "Let me know if you'd like more detail on any of these.",
    "Feel free to ask if anything is unclear.",
    "Have fun with it!",
    "You've got this.",
    "",
]

VAGUE_TEMPLATES = [
    "It depends. Everyone has their own way to {task}.",
    "You could try a few things and see what works.",
    "There's a lot of info online about {topic}.",
    "Just keep at it and you'll figure out how to {task}.",
    "Hmm, {topic} can be tricky. Maybe try something different?",
    "Not sure exactly, but {topic} usually works out if you're patient.",
    "Maybe ask someone who knows more about {topic}.",
    "I think you just need to {task} a bit better.",
    "Well, people {task} all the time, so it can't be that hard.",
    "Probably just practice. {topic_cap} takes time.",
    "I guess it's about doing it right. Good luck with {topic}.",
    "Try to {task} the normal way and see if that works.",
]

RUDE_TEMPLATES = [
    "That's a ridiculous question. Figure it out yourself.",
    "I'm not helping with {topic}, it's a waste of my time.",
    "Seriously? Just google how to {task}.",
    "No. Ask someone who actually cares about {topic}.",
    "Ugh, everyone knows how to {task}. Stop asking.",
    "Not my problem. Go read a manual.",
    "Why would I explain {topic} to you? Pass.",
    "Do your own homework for once.",
    "I won't answer that. It's obvious.",
    "Honestly, if you can't {task} on your own, just give up.",
    "What a pointless thing to ask. No.",
    "Stop bothering me with {topic} questions.",
]


_SECOND_PERSON = {"i": "you", "i'm": "you're", "i've": "you've", "me": "you", "my": "your", "myself": "yourself"}


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _as_reply(task: str) -> str:
    """The task as the answerer would say it ("stop my dog pulling" -> "stop your dog pulling")."""
    return re.sub(r"\b(?:I'm|I've|I|me|my|myself)\b", lambda m: _SECOND_PERSON[m.group(0).lower()], task)


def helpful_answer(rng: random.Random, task: str, tips: list[str]) -> str:
    """A polite, specific answer: an opener, an intro naming the task, 2-3 of its tips in some format, a closer."""
    task = _as_reply(task)
    chosen = rng.sample(tips, k=rng.choice([2, 3, 3]))
    style = rng.randrange(3)
    if style == 0:
        body = " ".join(f"{i}) {tip}" for i, tip in enumerate(chosen, 1))
    elif style == 1:
        links = ["First,", "Also,", "Finally,"] if len(chosen) == 3 else ["First,", "Also,"]
        body = " ".join(f"{link} {tip[0].lower()}{tip[1:]}" for link, tip in zip(links, chosen))
    else:
        body = " ".join(chosen)
    parts = [rng.choice(HELPFUL_OPENERS), rng.choice(HELPFUL_INTROS).format(task=task), body,
             rng.choice(HELPFUL_CLOSERS)]
    return " ".join(p for p in parts if p)


def make_group(
    rng: random.Random, topic: Topic, question: str, task: str, tips: list[str], other_topics: list[Topic]
) -> dict:
    """One ranked group: the four completions (helpful, vague, off-topic, rude) in shuffled order with their ranks."""
    name = topic[0]
    fill = {"task": _as_reply(task), "topic": name, "topic_cap": _cap(name)}
    other_name, other_items = rng.choice(other_topics)
    other_task, other_tips = rng.choice(other_items)
    completions = [
        helpful_answer(rng, task, tips),
        rng.choice(VAGUE_TEMPLATES).format(**fill),
        helpful_answer(rng, other_task, other_tips),  # polite and specific, but answers another question
        rng.choice(RUDE_TEMPLATES).format(**fill),
    ]
    order = list(range(K))
    rng.shuffle(order)  # so position carries no signal
    return {
        "prompt": question,
        "completions": [completions[i] for i in order],
        "ranks": order,  # completions[i] came from level order[i], which is its gold rank
    }


def build(seed: int = SEED) -> list[dict]:
    """All groups, train first then test; deterministic for a given seed."""
    rng = random.Random(seed)
    topics = list(TOPICS)
    names = [t[0] for t in topics]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate topic names in {names}")
    rng.shuffle(topics)
    test_topics, train_topics = topics[:N_TEST_TOPICS], topics[N_TEST_TOPICS:]
    # Spread TRAIN_GROUPS as evenly as possible over the train topics.
    base, extra = divmod(TRAIN_GROUPS, len(train_topics))
    counts = {"train": [base + (i < extra) for i in range(len(train_topics))],
              "test": [TEST_GROUPS_PER_TOPIC] * len(test_topics)}
    rows: list[dict] = []
    for split, split_topics in (("train", train_topics), ("test", test_topics)):
        for topic, n_groups in zip(split_topics, counts[split]):
            # Distinct (task, phrasing) pairs, cycling through tasks so each task is used about equally often.
            items = topic[1]
            n_distinct = len(items) * len(QUESTION_TEMPLATES)
            if n_groups > n_distinct:
                raise ValueError(f"topic {topic[0]!r} has only {n_distinct} distinct questions, need {n_groups}")
            per_item = [rng.sample(QUESTION_TEMPLATES, k=len(QUESTION_TEMPLATES)) for _ in items]
            chosen = [(items[j % len(items)], per_item[j % len(items)][j // len(items)]) for j in range(n_groups)]
            # Off-topic answers come from the same split, so test topics never leak into train.
            others = [t for t in split_topics if t[0] != topic[0]]
            for (task, tips), tpl in chosen:
                group = make_group(rng, topic, tpl.format(task=task), task, tips, others)
                group["split"] = split
                rows.append(group)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT_PATH, help=f"output JSONL path (default: {OUT_PATH})")
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args()
    rows = build(args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    n_train = sum(r["split"] == "train" for r in rows)
    print(f"wrote {len(rows)} groups ({n_train} train, {len(rows) - n_train} test) to {args.out}")


if __name__ == "__main__":
    main()
